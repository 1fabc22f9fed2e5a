"""``fednet peer serve``: an inference peer serving a client's hub adapters."""

from __future__ import annotations

import argparse
import os

from fednet.cli._common import add_command, add_subcommands
from fednet.cli._hubargs import add_hub_options, add_trust_options, open_hub

__all__ = ["register", "cmd_peer"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "peer", help="run an inference peer")
    peer = add_subcommands(p, "peer_command")
    serve = add_command(
        peer,
        "serve",
        help="serve a client's hub adapters on POST /v1/classify",
        description="Serve a client's hub adapters on POST /v1/classify until interrupted. "
        "The peer registers with the hub, signed with the client's owner key, and sends "
        "heartbeats.",
    )
    add_hub_options(serve, "hub token with the heartbeat scope (default: $FEDNET_HUB_TOKEN)")
    serve.add_argument("--client", required=True, help="client id whose adapters to serve")
    serve.add_argument(
        "--key", required=True, help="the client's owner key (PEM), which signs registrations"
    )
    serve.add_argument(
        "--require-token",
        default=os.environ.get("FEDNET_PEER_TOKEN"),
        help="answer /v1/classify only with this bearer token (default: $FEDNET_PEER_TOKEN)",
    )
    add_trust_options(serve)
    serve.add_argument("--adapters", help="comma-separated adapter names (default: the client's)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    serve.add_argument("--cache-dir", help="disk cache of fetched adapters")
    serve.add_argument("--max-length", type=int, default=64, help="tokens per text")
    serve.add_argument(
        "--batch-window",
        type=float,
        default=0.002,
        help="seconds a request waits for others to share its forward pass",
    )
    serve.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats")
    p.set_defaults(func=cmd_peer)


def cmd_peer(args: argparse.Namespace) -> int:
    """``fednet peer serve``: blocks until interrupted."""
    from fednet.hub import load_private_key
    from fednet.inference import PeerConfig, PeerServer, owned_adapters

    key = load_private_key(args.key)
    with open_hub(args) as hub:
        adapters = args.adapters.split(",") if args.adapters else owned_adapters(hub, args.client)
        server = PeerServer(
            hub,
            peer_id=args.client,
            adapters=adapters,
            host=args.host,
            port=args.port,
            cache_dir=args.cache_dir,
            key=key,
            token=args.require_token,
            config=PeerConfig(
                max_length=args.max_length,
                batch_window_s=args.batch_window,
                heartbeat_s=args.heartbeat,
            ),
        )
        print(f"peer {args.client} serving {', '.join(adapters)}", flush=True)
        server.serve_forever()
    return 0
