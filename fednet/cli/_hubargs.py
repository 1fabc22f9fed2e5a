"""Options that reach a hub and a trust store, shared by ``hub``, ``peer`` and ``ask``."""

from __future__ import annotations

import argparse
import os

__all__ = [
    "HUB_HELP",
    "add_hub_options",
    "add_trust_options",
    "hub_location",
    "hub_token",
    "name_version",
    "open_hub",
    "trust_store",
]

HUB_HELP = "hub URL or store directory (default: $FEDNET_HUB or http://127.0.0.1:8080)"


def hub_location(value: str | None) -> str:
    """``value``, else ``$FEDNET_HUB``, else the local default hub."""
    return value or os.environ.get("FEDNET_HUB") or "http://127.0.0.1:8080"


def hub_token(value: str | None) -> str | None:
    """``value``, else ``$FEDNET_HUB_TOKEN``, else no token."""
    return value or os.environ.get("FEDNET_HUB_TOKEN") or None


def add_hub_options(
    p: argparse.ArgumentParser, token_help: str = "bearer token (default: $FEDNET_HUB_TOKEN)"
) -> None:
    p.add_argument("--hub", help=HUB_HELP)
    p.add_argument("--token", help=token_help)


def add_trust_options(p: argparse.ArgumentParser, *, pins: bool = True) -> None:
    """``--trust-file`` and ``--tofu``; ``pins=False`` for commands that never pin a key."""
    p.add_argument(
        "--trust-file",
        help="trust store of pinned owner keys (default: $FEDNET_TRUST_FILE or "
        "~/.config/fednet/trust.json)",
    )
    p.add_argument(
        "--tofu",
        action="store_true",
        help=(
            "trust on first use: pin (and write to the trust store) the key of any owner "
            "not pinned yet"
            if pins
            else "ignored here: this command only looks, and never pins a key"
        ),
    )


def trust_store(args: argparse.Namespace):
    """The trust store named by ``--trust-file`` and ``--tofu``."""
    from fednet.hub.trust import TrustStore

    return TrustStore(getattr(args, "trust_file", None), tofu=getattr(args, "tofu", False))


def open_hub(args: argparse.Namespace):
    """The hub named by ``--hub`` and ``--token``, reading through the trust store."""
    from fednet.hub import open_hub as _open_hub

    return _open_hub(hub_location(args.hub), token=hub_token(args.token), trust=trust_store(args))


def name_version(ref: str) -> tuple[str, str]:
    """``NAME@VERSION`` (or ``NAME@vVERSION``, or ``NAME``) as ``(name, version or "latest")``."""
    name, _, version = ref.partition("@")
    return name, (version.lstrip("v") or "latest")
