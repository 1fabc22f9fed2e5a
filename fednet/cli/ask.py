"""``fednet ask``: route a query to the network of peers and print who answered."""

from __future__ import annotations

import argparse
import os

from fednet.cli._common import add_command
from fednet.cli._hubargs import (
    add_hub_options,
    add_trust_options,
    hub_location,
    hub_token,
    trust_store,
)

__all__ = ["register", "cmd_ask"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "ask",
        help="ask the network of peers (or, --local, the hub's adapters)",
        description="Route a query to the peers serving the hub's adapters (or, with --local, "
        "pull the chosen adapters and run them here) and print the answer with who gave it.",
    )
    p.add_argument("text", help="the query")
    add_hub_options(p, "hub read token (default: $FEDNET_HUB_TOKEN)")
    p.add_argument("--local", action="store_true", help="pull adapters and run them here")
    p.add_argument(
        "--mode",
        choices=["cascade", "ensemble"],
        default="cascade",
        help="cascade stops at the first answer at least --threshold confident; "
        "ensemble combines the candidates' answers",
    )
    p.add_argument("--router", default="sketch", help="router name (sketch, learned, prior)")
    p.add_argument("-k", "--top-k", type=int, default=2, help="candidates to route to")
    p.add_argument("--threshold", type=float, default=0.8, help="cascade confidence threshold")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per peer")
    p.add_argument("--latency-budget", type=float, default=None, help="seconds per candidate")
    p.add_argument(
        "--max-query-chars",
        type=int,
        default=None,
        help="longest query (default: hub.max-query-chars of --config, or 2000)",
    )
    p.add_argument("--config", default=None, help="preset whose [hub] section to use")
    p.add_argument("--json", action="store_true", help="print the answer with provenance as JSON")
    p.add_argument(
        "--peer-token",
        default=os.environ.get("FEDNET_PEER_TOKEN"),
        help="bearer token for peers that need one (default: $FEDNET_PEER_TOKEN)",
    )
    add_trust_options(p)
    p.set_defaults(func=cmd_ask)


def cmd_ask(args: argparse.Namespace) -> int:
    """``fednet ask "text"``: print the answer and who gave it."""
    import json

    from fednet.inference import AskConfig, Network
    from fednet.routing import RouterConfig

    max_chars, location, token = 2000, args.hub, args.token
    if args.config:
        from fednet.config import load_preset

        hub_cfg = load_preset(args.config).hub
        max_chars = hub_cfg.max_query_chars
        location, token = location or hub_cfg.location or None, token or hub_cfg.token or None
    config = AskConfig(
        router=RouterConfig(
            name=args.router, top_k=args.top_k, latency_budget_s=args.latency_budget
        ),
        mode=args.mode,
        confidence_threshold=args.threshold,
        peer_timeout_s=args.timeout,
        max_query_chars=args.max_query_chars or max_chars,
    )
    with Network(
        hub_location(location),
        config=config,
        local=args.local,
        token=hub_token(token),
        trust=trust_store(args),
        peer_token=args.peer_token,
    ) as network:
        answer = network.ask(args.text)
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
        return 0
    print(
        f"{answer.label}  (task {answer.task}, confidence {answer.confidence:.3f}, "
        f"{answer.latency_s * 1000:.0f} ms, {answer.mode})"
    )
    for call in answer.calls:
        status = f"{call.label} {call.confidence:.3f}" if call.ok else f"failed: {call.error}"
        print(f"  {call.peer_id}/{call.adapter}: {status} ({call.latency_s * 1000:.0f} ms)")
    return 0
