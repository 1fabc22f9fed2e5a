"""``fednet trust``: the owner keys a reader pins."""

from __future__ import annotations

import argparse

from fednet.cli._common import add_command, add_subcommands
from fednet.errors import FednetError

__all__ = ["register", "cmd_trust"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "trust", help="pin, list and unpin owner keys readers trust")
    trust = add_subcommands(p, "trust_command")
    add = add_command(trust, "add", help="pin an owner's public key")
    add.add_argument("owner", help="client id")
    add.add_argument("key", help="base64 or hex public key, or a .pub PEM file")
    ls = add_command(trust, "ls", help="list pinned keys")
    remove = add_command(trust, "remove", help="unpin an owner's key (all of them without KEY)")
    remove.add_argument("owner", help="client id")
    remove.add_argument("key", nargs="?", help="key or fingerprint")
    for q in (add, ls, remove):
        q.add_argument(
            "--trust-file",
            help="trust store of pinned owner keys (default: $FEDNET_TRUST_FILE or "
            "~/.config/fednet/trust.json)",
        )
    p.set_defaults(func=cmd_trust)


def cmd_trust(args: argparse.Namespace) -> int:
    """``fednet trust add|ls|remove``."""
    from fednet.hub.trust import TrustStore, read_key_argument

    store = TrustStore(args.trust_file)
    if args.trust_command == "add":
        pinned = store.add(args.owner, read_key_argument(args.key))
        print(f"pinned {pinned.owner} {pinned.fingerprint} in {store.path}")
    elif args.trust_command == "ls":
        for e in store.entries():
            print(f"{e.owner:<20} {e.fingerprint}  {e.key}  {e.source} {e.added}")
    else:
        removed = store.remove(args.owner, args.key)
        if not removed:
            raise FednetError(f"no pinned key of {args.owner!r} matches in {store.path}")
        print(f"unpinned {removed} key(s) of {args.owner}")
    return 0
