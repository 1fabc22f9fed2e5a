"""The ``fednet`` command line.

``fednet simulate`` runs a federation on this machine with Flower's Simulation
Engine. Errors in configs or arguments print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from fednet.errors import FednetError

__all__ = ["main", "build_parser", "register_command"]

logger = logging.getLogger("fednet.cli")

_COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def register_command(name: str) -> Callable:
    """Register a function that adds subcommand ``name`` to the parser."""

    def deco(fn: Callable[[argparse._SubParsersAction], None]) -> Callable:
        _COMMANDS[name] = fn
        return fn

    return deco


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def setup_logging(verbose: bool = False) -> None:
    """Human-readable progress on stderr; quiet third-party chatter."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    root = logging.getLogger("fednet")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(h)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


@register_command("simulate")
def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a federation with Flower's Simulation Engine")
    p.add_argument("--config", default="configs/default.toml", help="TOML preset")
    p.add_argument("--rounds", type=int, default=None, help="override federation.rounds")
    p.add_argument("--run-dir", default=None, help="output directory (default runs/<time>)")
    p.add_argument("--strategy", default=None, help="override strategy.name (e.g. local)")
    p.set_defaults(func=cmd_simulate)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise FednetError(f"`{name}` must be >= 1, got {value}")


def cmd_simulate(args: argparse.Namespace) -> int:
    """Load and check the preset, then run it in simulation."""
    import dataclasses

    from fednet.config import load_preset
    from fednet.federation.apps import new_run_dir
    from fednet.federation.preflight import check_federation

    _positive("--rounds", args.rounds)
    cfg = load_preset(args.config)
    if args.rounds:
        cfg = cfg.with_overrides(rounds=args.rounds)
    if args.strategy:
        cfg = cfg.with_overrides(strategy=dataclasses.replace(cfg.strategy, name=args.strategy))
    check_federation(cfg)
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FednetError(f"`--run-dir` {str(run_dir)!r} exists and is not empty")
    from fednet.federation.recorder import format_summary
    from fednet.federation.simulation import simulate

    summary = simulate(cfg, run_dir)
    print(format_summary(summary, run_dir))
    return 0 if summary.get("complete", True) else 1


@register_command("data")
def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check a data file before a federation reads it")
    data = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    check = data.add_parser(
        "check", help="rows read, kept and dropped, label counts, duplicates and encoding"
    )
    check.add_argument("file", help="a .csv, .tsv, .json, .jsonl or .parquet file")
    check.add_argument("--text-column", default="text", help="column of the texts")
    check.add_argument("--label-column", default="label", help="column of the labels")
    check.add_argument("--encoding", default=None, help="text encoding (default: UTF-8 or BOM)")
    check.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_data)


def cmd_data(args: argparse.Namespace) -> int:
    """``fednet data check FILE``: print what a client would read from FILE."""
    from fednet.data.check import check_data_file, format_check

    report = check_data_file(
        args.file,
        text_column=args.text_column,
        label_column=args.label_column,
        encoding=args.encoding,
    )
    print(format_check(report, as_json=args.json))
    return 0


# --------------------------------------------------------------------------- hub, peer, ask

_HUB_HELP = "hub URL or store directory (default $FEDNET_HUB or http://127.0.0.1:8080)"


def _hub_location(value: str | None) -> str:
    return value or os.environ.get("FEDNET_HUB") or "http://127.0.0.1:8080"


def _hub_token(value: str | None) -> str | None:
    return value or os.environ.get("FEDNET_HUB_TOKEN") or None


def _add_trust_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-file",
        help="trust store of pinned owner keys (default $FEDNET_TRUST_FILE or "
        "~/.config/fednet/trust.json)",
    )
    p.add_argument(
        "--tofu",
        action="store_true",
        help="trust on first use: pin (and write to the trust store) the key of any owner "
        "not pinned yet",
    )


def _trust(args: argparse.Namespace):
    from fednet.hub.trust import TrustStore

    return TrustStore(getattr(args, "trust_file", None), tofu=getattr(args, "tofu", False))


def _open(args: argparse.Namespace):
    from fednet.hub import open_hub

    return open_hub(_hub_location(args.hub), token=_hub_token(args.token), trust=_trust(args))


def _name_version(ref: str) -> tuple[str, str]:
    name, _, version = ref.partition("@")
    return name, (version.lstrip("v") or "latest")


@register_command("hub")
def _add_hub(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hub", help="serve, list, inspect, pull, push and verify hub adapters")
    hub = p.add_subparsers(dest="hub_command", required=True, parser_class=_Parser)
    serve = hub.add_parser("serve", help="serve a hub directory over HTTP (OpenAPI at /docs)")
    serve.add_argument("--root", required=True, help="hub directory")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--private-reads", action="store_true", help="reads need a token with the read scope"
    )
    token = hub.add_parser("token", help="create, list or revoke the hub's bearer tokens")
    tokens = token.add_subparsers(dest="token_command", required=True, parser_class=_Parser)
    create = tokens.add_parser("create", help="create a token (printed once; stored hashed)")
    create.add_argument("--scopes", required=True, help="comma-separated: read,publish,heartbeat")
    create.add_argument("--label", default="", help="a note naming who holds it")
    tokens.add_parser("ls", help="list tokens (ids and scopes, never secrets)")
    revoke = tokens.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    for q in (create, tokens.choices["ls"], revoke):
        q.add_argument("--root", required=True, help="hub directory")
    for name, helptext in [
        ("ls", "list the latest adapters"),
        ("verify", "check signatures and blobs"),
        ("show", "print a manifest"),
        ("pull", "fetch an adapter into a directory"),
        ("push", "publish an adapter or a run"),
    ]:
        q = hub.add_parser(name, help=helptext)
        q.add_argument("--hub", help=_HUB_HELP)
        q.add_argument("--token", help="bearer token (default $FEDNET_HUB_TOKEN)")
        _add_trust_options(q)
        if name == "ls":
            q.add_argument("--peers", action="store_true", help="list peers instead")
        if name in ("show", "pull"):
            q.add_argument("ref", help="NAME or NAME@VERSION")
        if name == "verify":
            q.add_argument("name", nargs="?", help="only this adapter")
        if name == "pull":
            q.add_argument("dest", help="destination directory")
        if name == "push":
            q.add_argument(
                "path", help="a run directory (publishes every client) or an adapter directory"
            )
            q.add_argument(
                "--keys-dir",
                default=None,
                help="sign a run with these owner keys, as their holder (default: forward "
                "the manifests the run's clients signed themselves, <run>/signed/)",
            )
            q.add_argument("--key", help="owner key (PEM) for an adapter directory")
            q.add_argument("--name", help="adapter name")
            q.add_argument("--owner", help="owner client id")
            q.add_argument("--task", help="task (default: from head.safetensors)")
            q.add_argument("--base-model", help="base model (default: from the adapter)")
            q.add_argument("--kind", default="shared")
            q.add_argument("--round", type=int, default=0)
    p.set_defaults(func=cmd_hub)


def _push(args: argparse.Namespace, hub) -> int:
    from fednet.hub import load_private_key
    from fednet.hub.publish import SIGNED_DIR, publish_adapter_dir, publish_run, publish_signed_run

    path = Path(args.path)
    if (path / "summary.json").is_file():
        if args.keys_dir:
            manifests = publish_run(path, hub, keys_dir=args.keys_dir)
        elif (path / SIGNED_DIR).is_dir():
            manifests = publish_signed_run(path, hub)
        else:
            raise FednetError(
                f"run {path} has no manifests signed by its clients ({SIGNED_DIR}/); "
                "give --keys-dir to sign with owner keys you hold"
            )
        for m in manifests:
            print(f"published {m.ref} ({m.kind}, {m.task}, owner {m.owner})")
        return 0
    missing = [o for o in ("name", "owner", "key") if not getattr(args, o)]
    if missing:
        raise FednetError(f"pushing an adapter directory needs --{', --'.join(missing)}")
    stored = publish_adapter_dir(
        path,
        hub,
        name=args.name,
        owner=args.owner,
        key=load_private_key(args.key),
        kind=args.kind,
        round=args.round,
        task=args.task,
        base_model=args.base_model,
    )
    print(f"published {stored.ref}")
    return 0


def _token(args: argparse.Namespace) -> int:
    from fednet.hub import HubStore

    with HubStore(args.root) as store:
        if args.token_command == "create":
            token = store.tokens.create(args.scopes, label=args.label)
            print(token)
            print("(shown once: the hub keeps only its sha256)", file=sys.stderr)
        elif args.token_command == "ls":
            for info in store.tokens.list():
                print(f"{info.token_id}  {','.join(info.scopes):<24} {info.created}  {info.label}")
        elif not store.tokens.revoke(args.token_id):
            raise FednetError(f"no token {args.token_id!r} in {args.root}")
    return 0


@register_command("trust")
def _add_trust(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trust", help="pin, list and unpin owner keys readers trust")
    trust = p.add_subparsers(dest="trust_command", required=True, parser_class=_Parser)
    add = trust.add_parser("add", help="pin an owner's public key")
    add.add_argument("owner", help="client id")
    add.add_argument("key", help="base64 or hex public key, or a .pub PEM file")
    ls = trust.add_parser("ls", help="list pinned keys")
    remove = trust.add_parser("remove", help="unpin an owner's key (all of them without KEY)")
    remove.add_argument("owner")
    remove.add_argument("key", nargs="?", help="key or fingerprint")
    for q in (add, ls, remove):
        q.add_argument(
            "--trust-file", help="default $FEDNET_TRUST_FILE or ~/.config/fednet/trust.json"
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


def cmd_hub(args: argparse.Namespace) -> int:
    """``fednet hub serve|ls|show|pull|push|verify``."""
    import json
    import tempfile

    if args.hub_command == "serve":
        from fednet.hub import serve

        serve(args.root, args.host, args.port, public_reads=not args.private_reads)
        return 0
    if args.hub_command == "token":
        return _token(args)
    with _open(args) as hub:
        if args.hub_command == "ls" and args.peers:
            for peer in hub.peers():
                state = "up" if peer.up else "down"
                served = ",".join(peer.adapters)
                print(f"{peer.peer_id:<20} {state:<5} {peer.endpoint:<28} {served}")
        elif args.hub_command == "ls":
            print(
                f"{'NAME@VERSION':<32} {'KIND':<13} {'TASK':<18} {'BASE':<10} RANK  ACC    "
                "UPD-EPS  SKETCH-EPS  TOTAL-EPS  SKETCH"
            )
            for m in hub.list():
                acc = m.metrics.get("accuracy")

                def eps(v: float | None, note: str | None = m.epsilon_note) -> str:
                    return "-" if v is None else f"{v:.2f}" + ("!" if note else "")

                print(
                    f"{m.ref:<32} {m.kind:<13} {m.task:<18} {m.base_model:<10} {m.rank:<5} "
                    f"{'-' if acc is None else f'{acc:.3f}':<6} {eps(m.update_epsilon):<8} "
                    f"{eps(m.sketch_epsilon):<11} {eps(m.epsilon):<10} "
                    f"{'yes' if m.sketch else 'no'}"
                )
                if m.epsilon_note:
                    print(f"  ! {m.epsilon_note}")
        elif args.hub_command == "show":
            print(hub.resolve(*_name_version(args.ref)).to_json(indent=2))
        elif args.hub_command == "pull":
            name, version = _name_version(args.ref)
            m = hub.fetch(name, version, args.dest)
            print(f"pulled {m.ref} into {args.dest} (signature and sha256 verified)")
        elif args.hub_command == "push":
            return _push(args, hub)
        else:
            names = [args.name] if args.name else [m.name for m in hub.list()]
            if hasattr(hub, "verify"):
                problems = hub.verify(args.name)
            else:
                problems = []
                from fednet.hub.bundle import check_adapter_fits, read_adapter_dir

                with tempfile.TemporaryDirectory() as tmp:
                    for i, name in enumerate(names):
                        try:
                            m = hub.fetch(name, "latest", Path(tmp) / str(i))
                            files = read_adapter_dir(Path(tmp) / str(i))
                            check_adapter_fits(files, base_model=m.base_model, where=m.ref)
                        except (FednetError, ValueError) as e:
                            problems.append(f"{name}: {e}")
            for problem in problems:
                print(problem)
            print(json.dumps({"checked": len(names), "problems": len(problems)}))
            return 1 if problems else 0
    return 0


@register_command("privacy")
def _add_privacy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("privacy", help="privacy ledgers: reset, benchmark")
    priv = p.add_subparsers(dest="privacy_command", required=True, parser_class=_Parser)
    reset = priv.add_parser(
        "reset-ledger",
        help="retire a client's privacy ledger(s) so its budget starts again (logged)",
    )
    reset.add_argument("--state-dir", required=True, help="state directory root")
    reset.add_argument("--client", required=True, help="client id")
    reset.add_argument("--fingerprint", help="only the ledger of this data fingerprint")
    bench = priv.add_parser("bench-ledger", help="time an epsilon query on a long ledger")
    bench.add_argument("--releases", type=int, default=1000)
    p.set_defaults(func=cmd_privacy)


def cmd_privacy(args: argparse.Namespace) -> int:
    """``fednet privacy reset-ledger`` and ``fednet privacy bench-ledger``."""
    from fednet.privacy import reset_ledgers, time_epsilon_query

    if args.privacy_command == "reset-ledger":
        for r in reset_ledgers(args.state_dir, args.client, fingerprint=args.fingerprint):
            print(
                f"reset {r['client_id']} {r['ledger']}: epsilon {r['epsilon']:.4g} "
                f"(delta {r['delta']:g}, {r['releases']} releases) kept as {r['kept_as']}"
            )
        return 0
    t = time_epsilon_query(args.releases)
    print(
        f"{int(t['releases'])} releases: epsilon query {t['epsilon_s'] * 1e3:.3f} ms, "
        f"epsilon_after {t['epsilon_after_s'] * 1e3:.3f} ms"
    )
    return 0


@register_command("peer")
def _add_peer(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("peer", help="run an inference peer")
    peer = p.add_subparsers(dest="peer_command", required=True, parser_class=_Parser)
    serve = peer.add_parser("serve", help="serve a client's hub adapters on POST /v1/classify")
    serve.add_argument("--hub", help=_HUB_HELP)
    serve.add_argument(
        "--token", help="hub token with the heartbeat scope (default $FEDNET_HUB_TOKEN)"
    )
    serve.add_argument("--client", required=True, help="client id whose adapters to serve")
    serve.add_argument(
        "--key", required=True, help="the client's owner key (PEM), which signs registrations"
    )
    serve.add_argument(
        "--require-token",
        default=os.environ.get("FEDNET_PEER_TOKEN"),
        help="answer /v1/classify only with this bearer token (default $FEDNET_PEER_TOKEN)",
    )
    _add_trust_options(serve)
    serve.add_argument("--adapters", help="comma-separated adapter names (default: the client's)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
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
    with _open(args) as hub:
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


@register_command("ask")
def _add_ask(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="ask the network of peers (or, --local, the hub's adapters)")
    p.add_argument("text", help="the query")
    p.add_argument("--hub", help=_HUB_HELP)
    p.add_argument("--token", help="hub read token (default $FEDNET_HUB_TOKEN)")
    p.add_argument("--local", action="store_true", help="pull adapters and run them here")
    p.add_argument("--mode", choices=["cascade", "ensemble"], default="cascade")
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
        help="bearer token for peers that need one (default $FEDNET_PEER_TOKEN)",
    )
    _add_trust_options(p)
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
        _hub_location(location),
        config=config,
        local=args.local,
        token=_hub_token(token),
        trust=_trust(args),
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


@register_command("bench")
def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="benchmark the network against one big model: figures, plots, targets"
    )
    p.add_argument(
        "--config",
        default=None,
        help="TOML preset (default configs/default.toml, or tiny with --quick)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny-bert, short rounds, few queries: a smoke run of every stage",
    )
    p.add_argument("--out", default="bench/results", help="directory of the report and plots")
    p.add_argument("--queries", type=int, default=None, help="measured queries per data set")
    p.add_argument("--warmup", type=int, default=None, help="router warm-up queries per data set")
    p.add_argument(
        "--clients-at-once",
        type=int,
        default=None,
        help="clients each simulation runs concurrently (default: one per core)",
    )
    p.add_argument(
        "--sections",
        default=None,
        help="comma-separated extra sections: routing, privacy, or none "
        "(default: routing,privacy; routing with --quick)",
    )
    p.add_argument(
        "--reuse",
        default=None,
        help="a previous <time>-work directory: reuse its runs, centralized model and sections",
    )
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark with a progress bar; print the table and the targets."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from fednet.bench import BenchConfig, run_bench
    from fednet.bench.markdown import human_bytes
    from fednet.bench.runner import STAGES

    options: dict[str, object] = {"out_dir": args.out, "clients_at_once": args.clients_at_once}
    if args.clients_at_once is not None and args.clients_at_once < 1:
        raise FednetError(f"`--clients-at-once` must be >= 1, got {args.clients_at_once}")
    if args.sections is not None:
        chosen = {s.strip() for s in args.sections.split(",") if s.strip()} - {"none"}
        unknown = sorted(chosen - {"routing", "privacy"})
        if unknown:
            raise FednetError(
                f"`--sections`: unknown section(s) {', '.join(unknown)}; valid: routing, privacy"
            )
        options["routing_section"] = "routing" in chosen
        options["privacy_section"] = "privacy" in chosen
    if args.config:
        options["preset"] = args.config
    if args.queries is not None:
        options["queries_per_dataset"] = args.queries
    if args.warmup is not None:
        options["warmup_per_dataset"] = args.warmup
    if args.reuse is not None:
        if not Path(args.reuse).is_dir():
            raise FednetError(f"`--reuse` {args.reuse!r} is not a directory")
        options["reuse"] = args.reuse
    config = BenchConfig.quick_mode(**options) if args.quick else BenchConfig(**options)  # type: ignore[arg-type]
    # On a terminal a bar; elsewhere the stage log lines are the progress display.
    with (
        tqdm(
            total=len(STAGES), unit="stage", file=sys.stderr, disable=not sys.stderr.isatty()
        ) as bar,
        logging_redirect_tqdm(loggers=[logging.getLogger("fednet")]),
    ):

        def progress(stage: str, index: int, total: int) -> None:
            bar.n = index
            bar.set_description(stage)
            bar.refresh()

        report = run_bench(config, progress=progress)
        bar.n = len(STAGES)
        bar.set_description("done")
    for row in report["rows"]:
        print(
            f"{row['name']:<56} accuracy {row['accuracy']:.3f}  "
            f"p50 {row['latency_p50_ms']:7.1f} ms  "
            f"{row['cpu_s_per_1000']:7.1f} CPU-s/1k  "
            f"shared {human_bytes(row['bytes_shared_per_client'])}"
        )
    for t in report["targets"]:
        print(f"{'met' if t['met'] else 'NOT MET':<8} {t['target']}")
    print(f"report: {report['paths']['markdown']}")
    print(f"json:   {report['paths']['json']}")
    return 0


@register_command("bench-aggregation")
def _add_bench_aggregation(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench-aggregation",
        help="accuracy and bytes of each rank-aggregation; attacks with and without each wrapper",
    )
    p.add_argument("--config", default="configs/default.toml", help="TOML preset")
    p.add_argument("--grouping", default="base-model", help="strategy.lora-grouping of every run")
    p.add_argument("--rounds", type=int, default=None, help="override federation.rounds")
    p.add_argument("--methods", default="fedit,rank-wise,svd,frozen-a", help="comma-separated")
    p.add_argument(
        "--attacks",
        default="norm-x100,sign-flip,gaussian-noise,label-flip,backdoor",
        help="comma-separated, or none",
    )
    p.add_argument(
        "--wrappers",
        default="none,norm-bound,trimmed-mean,median,multi-krum",
        help="comma-separated strategy.robust values run under each attack",
    )
    p.add_argument(
        "--malicious",
        type=int,
        default=None,
        help="index of the malicious client (default: the first sms-spam client)",
    )
    p.add_argument(
        "--no-clean",
        action="store_true",
        help="skip the clean reference row (another report of the same settings holds it)",
    )
    p.add_argument("--out", default="bench/results", help="directory of the JSON and Markdown")
    p.set_defaults(func=cmd_bench_aggregation)


def cmd_bench_aggregation(args: argparse.Namespace) -> int:
    """Run the aggregation benchmark; print where its tables are."""
    from fednet.bench.aggregation import ATTACKS, run_aggregation_bench
    from fednet.config import LORA_GROUPINGS, RANK_AGGREGATIONS, ROBUST_RULES

    def names(value: str, valid: Sequence[str], flag: str) -> list[str]:
        chosen = [v.strip() for v in value.split(",") if v.strip()]
        if flag != "--wrappers":  # "none" is a wrapper, but no method or attack
            chosen = [v for v in chosen if v != "none"]
        bad = [v for v in chosen if v not in valid]
        if bad:
            raise FednetError(f"`{flag}`: unknown {', '.join(bad)}; valid: {', '.join(valid)}")
        return chosen

    if args.grouping not in LORA_GROUPINGS:
        raise FednetError(f"`--grouping` must be one of {', '.join(LORA_GROUPINGS)}")
    _positive("--rounds", args.rounds)
    report = run_aggregation_bench(
        args.config,
        args.out,
        grouping=args.grouping,
        methods=names(args.methods, RANK_AGGREGATIONS, "--methods"),
        attacks=names(args.attacks, ATTACKS, "--attacks"),
        wrappers=names(args.wrappers, ROBUST_RULES, "--wrappers"),
        rounds=args.rounds,
        malicious=args.malicious,
        clean=not args.no_clean,
        progress=lambda label: logger.info("running %s", label),
    )
    print(Path(report["paths"]["markdown"]).read_text())
    print(f"json: {report['paths']['json']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fednet",
        description="Federated LoRA co-fine-tuning and joint inference over a network of models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fednet`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except (FednetError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"fednet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fednet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
