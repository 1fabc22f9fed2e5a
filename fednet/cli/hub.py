"""``fednet hub``: serve a hub, manage its tokens, and list, show, pull, push, verify adapters."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fednet.cli._common import add_command, add_subcommands
from fednet.cli._hubargs import add_hub_options, add_trust_options, name_version, open_hub
from fednet.errors import FednetError, SignatureError

__all__ = ["register", "cmd_hub"]

_LS_DESCRIPTION = (
    "List the latest version of every adapter as the hub serves it. SIGNED is the "
    "reader's own check of each manifest against the trust store: ok (the owner's "
    "signature verifies under a key pinned for that owner, or rotated to from one), "
    "unpinned (the signature verifies, but the key is not in the trust store; pin a key "
    "you have checked with `fednet trust add OWNER KEY`) or BAD (the signature does not "
    "verify: the hub altered or forged the row). Listing never pins a key, even with "
    "--tofu. A footnote on stderr names the BAD rows and the unpinned owners. Exits 1 "
    "if any row is BAD, else 0."
)
_SHOW_DESCRIPTION = (
    "Print a manifest (JSON, on stdout) as the hub serves it, and on stderr whether its "
    "owner's signature verifies against the trust store: verified (owner and key "
    "fingerprint), unpinned, or the signature error. Never pins a key, even with --tofu. "
    "Exits 1 if the signature does not verify."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "hub", help="serve, list, inspect, pull, push and verify hub adapters")
    hub = add_subcommands(p, "hub_command")
    serve = add_command(
        hub,
        "serve",
        help="serve a hub directory over HTTP (console at /ui, OpenAPI at /docs)",
        description="Serve a hub directory over HTTP until interrupted. The OpenAPI "
        "description is at /docs; the network console, a web page of the adapters, their "
        "verification, ε per client, peers, a query box and the benchmark plots, is at /ui.",
    )
    serve.add_argument("--root", required=True, help="hub directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument(
        "--private-reads", action="store_true", help="reads need a token with the read scope"
    )
    ui = serve.add_argument_group("network console at /ui (on unless --no-ui or --private-reads)")
    ui.add_argument("--no-ui", action="store_true", help="don't serve the console at /ui")
    ui.add_argument(
        "--trust-file",
        help="trust store the console verifies against (default: $FEDNET_TRUST_FILE or "
        "~/.config/fednet/trust.json)",
    )
    ui.add_argument("--bench-dir", default="bench/results", help="benchmark reports to show")
    ui.add_argument(
        "--epsilon-budget",
        type=float,
        help="ε budget per client the console compares against (default: the privacy default)",
    )
    ui.add_argument(
        "--ui-local", action="store_true", help="answer the console's queries in this process"
    )
    _add_token(hub)
    for name, helptext, description in [
        ("ls", "list the latest adapters and whether their owners signed them", _LS_DESCRIPTION),
        ("verify", "check signatures and blobs", None),
        ("show", "print a manifest and whether its owner signed it", _SHOW_DESCRIPTION),
        ("pull", "fetch an adapter into a directory", None),
        ("push", "publish an adapter or a run", None),
    ]:
        q = add_command(hub, name, help=helptext, description=description)
        add_hub_options(q)
        add_trust_options(q, pins=name not in ("ls", "show"))
        if name == "ls":
            q.add_argument("--peers", action="store_true", help="list peers instead")
        if name in ("show", "pull"):
            q.add_argument("ref", help="NAME or NAME@VERSION")
        if name == "verify":
            q.add_argument("name", nargs="?", help="only this adapter")
        if name == "pull":
            q.add_argument("dest", help="destination directory")
        if name == "push":
            _add_push_options(q)
    p.set_defaults(func=cmd_hub)


def _add_token(hub: argparse._SubParsersAction) -> None:
    token = add_command(hub, "token", help="create, list or revoke the hub's bearer tokens")
    tokens = add_subcommands(token, "token_command")
    create = add_command(tokens, "create", help="create a token (printed once; stored hashed)")
    create.add_argument("--scopes", required=True, help="comma-separated: read,publish,heartbeat")
    create.add_argument("--label", default="", help="a note naming who holds it")
    ls = add_command(tokens, "ls", help="list tokens (ids and scopes, never secrets)")
    revoke = add_command(tokens, "revoke", help="revoke a token by id")
    revoke.add_argument("token_id", help="the id `fednet hub token ls` shows")
    for q in (create, ls, revoke):
        q.add_argument("--root", required=True, help="hub directory")


def _add_push_options(q: argparse.ArgumentParser) -> None:
    q.add_argument("path", help="a run directory (publishes every client) or an adapter directory")
    q.add_argument(
        "--keys-dir",
        default=None,
        help="sign a run with these owner keys, as their holder (default: forward "
        "the manifests the run's clients signed themselves, <run>/signed/)",
    )
    q.add_argument(
        "--state-dir",
        default=None,
        help="with --keys-dir: where the run's clients keep their privacy ledgers, "
        "which must back every epsilon signed (default: the run preset's "
        "federation.state-dir)",
    )
    q.add_argument("--key", help="owner key (PEM) for an adapter directory")
    q.add_argument("--name", help="adapter name")
    q.add_argument("--owner", help="owner client id")
    q.add_argument("--task", help="task (default: from head.safetensors)")
    q.add_argument("--base-model", help="base model (default: from the adapter)")
    q.add_argument("--kind", default="shared", help="adapter kind of an adapter directory")
    q.add_argument("--round", type=int, default=0, help="round of an adapter directory")


def _push(args: argparse.Namespace, hub) -> int:
    from fednet.hub import load_private_key
    from fednet.hub.publish import SIGNED_DIR, publish_adapter_dir, publish_run, publish_signed_run

    path = Path(args.path)
    if (path / "summary.json").is_file():
        if args.keys_dir:
            from fednet.federation.signing import owner_checks

            vet = owner_checks(path, state_dir=args.state_dir)
            manifests = publish_run(path, hub, keys_dir=args.keys_dir, vet=vet)
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


def _signed(manifest, trust) -> str:
    """``ok``, ``unpinned`` or ``BAD``: ``manifest`` checked against ``trust``, pinning nothing."""
    try:
        return "ok" if trust.status(manifest) == "trusted" else "unpinned"
    except SignatureError:
        return "BAD"


def _printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\n``, ...).

    A manifest's free text comes from the hub: printed raw, control characters
    could move the cursor and paint over a row's verdict.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _ls(args: argparse.Namespace, hub) -> int:
    """Print the peers, or the latest adapters with their signature verdict.

    Returns
    -------
    int
        1 if any adapter's signature does not verify, else 0.
    """
    if args.peers:
        for peer in hub.peers():
            state = "up" if peer.up else "down"
            served = ",".join(peer.adapters)
            print(f"{peer.peer_id:<20} {state:<5} {peer.endpoint:<28} {served}")
        return 0
    from fednet.hub.trust import fingerprint

    print(
        f"{'NAME@VERSION':<32} {'OWNER':<12} {'SIGNED':<8} {'KIND':<13} {'TASK':<18} "
        f"{'BASE':<10} RANK  ACC    UPD-EPS  SKETCH-EPS  TOTAL-EPS  SKETCH"
    )
    bad: list[str] = []
    unpinned: dict[tuple[str, str], None] = {}
    for m in hub.list():
        signed = _signed(m, hub.trust)
        if signed == "BAD":
            bad.append(m.ref)
        elif signed == "unpinned":
            unpinned[(m.owner, fingerprint(m.owner_public_key))] = None
        acc = m.metrics.get("accuracy")

        def eps(v: float | None, note: str | None = m.epsilon_note) -> str:
            return "-" if v is None else f"{v:.2f}" + ("!" if note else "")

        print(
            f"{_printable(m.ref):<32} {_printable(m.owner):<12} {signed:<8} "
            f"{_printable(m.kind):<13} {_printable(m.task):<18} "
            f"{_printable(m.base_model):<10} {m.rank:<5} "
            f"{'-' if acc is None else f'{acc:.3f}':<6} {eps(m.update_epsilon):<8} "
            f"{eps(m.sketch_epsilon):<11} {eps(m.epsilon):<10} "
            f"{'yes' if m.sketch else 'no'}"
        )
        if m.epsilon_note:
            print(f"  ! {_printable(m.epsilon_note)}")
    if bad:
        print(
            f"BAD: {', '.join(bad)}: the owner's signature does not verify (the hub "
            "altered or forged the row); do not rely on what it shows",
            file=sys.stderr,
        )
    if unpinned:
        keys = ", ".join(f"{owner} {fp}" for owner, fp in unpinned)
        print(
            f"unpinned: the signature verifies, but the key is not in the trust store "
            f"{hub.trust.path or '(in memory)'} ({keys}); check a key with its owner, then "
            "pin it with `fednet trust add OWNER KEY`",
            file=sys.stderr,
        )
    return 1 if bad else 0


def _show(args: argparse.Namespace, hub) -> int:
    """Print a manifest on stdout and its signature verdict on stderr.

    Returns
    -------
    int
        1 if the manifest's signature does not verify, else 0.
    """
    from fednet.hub.trust import fingerprint

    name, version = name_version(args.ref)
    m = hub.resolve(name, version)
    print(m.to_json(indent=2))  # JSON escapes every control character
    if m.name != name or (version != "latest" and str(m.version) != version):
        print(
            f"BAD: asked for {name}@{version}, the hub answered {_printable(m.ref)}",
            file=sys.stderr,
        )
        return 1
    trust = hub.trust
    try:
        status = trust.status(m)
    except SignatureError as e:
        print(f"BAD signature: {e}", file=sys.stderr)
        return 1
    key = fingerprint(m.owner_public_key)
    where = trust.path or "(in memory)"
    if status == "trusted":
        how = (
            "pinned" if trust.pins(m.owner, m.owner_public_key) else "rotated to from a pinned key"
        )
        print(
            f"verified: signed by owner {m.owner!r} with key {key} ({how}, {where})",
            file=sys.stderr,
        )
    else:
        print(
            f"unpinned: the signature of owner {m.owner!r} verifies, but its key {key} is not "
            f"in the trust store {where}; pin it with `fednet trust add {m.owner} "
            f"{m.owner_public_key}` if you have checked it with its owner",
            file=sys.stderr,
        )
    return 0


def _verify(args: argparse.Namespace, hub) -> int:
    import json
    import tempfile

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


def cmd_hub(args: argparse.Namespace) -> int:
    """``fednet hub serve|token|ls|show|pull|push|verify``."""
    if args.hub_command == "serve":
        from fednet.hub import serve

        mount = None
        if args.private_reads and not args.no_ui:
            print("console /ui is off: it would show the hub without a token", file=sys.stderr)
        elif not args.no_ui:
            from fednet.console import console_mount

            mount = console_mount(
                trust_file=args.trust_file,
                bench_dir=args.bench_dir,
                epsilon_budget=args.epsilon_budget,
                local=args.ui_local,
            )
        serve(args.root, args.host, args.port, public_reads=not args.private_reads, mount=mount)
        return 0
    if args.hub_command == "token":
        return _token(args)
    with open_hub(args) as hub:
        if args.hub_command == "ls":
            return _ls(args, hub)
        if args.hub_command == "show":
            return _show(args, hub)
        if args.hub_command == "pull":
            name, version = name_version(args.ref)
            m = hub.fetch(name, version, args.dest)
            print(f"pulled {m.ref} into {args.dest} (signature and sha256 verified)")
        elif args.hub_command == "push":
            return _push(args, hub)
        else:
            return _verify(args, hub)
    return 0
