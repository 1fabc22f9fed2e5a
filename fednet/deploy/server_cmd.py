"""``flower-server``: run a fednet federation's coordinator on Flower's SuperLink.

One command does what a Flower user would do by hand (``docs/deployment.md``):

1. start ``flower-superlink`` (TLS with ``--certs``, SuperNode authentication);
2. register every client public key in ``<certs>/nodes/`` with
   ``flwr supernode register``;
3. submit the fednet ServerApp with ``flwr run`` (run config: the preset, the
   run directory and ``resume``) and stream its log with ``flwr log``;
4. stop every process it started when the run ends, on Ctrl-C or on SIGTERM.

Exit status: 0 when the run completed, 1 when it failed, 2 for bad input,
130 or 143 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fednet.deploy import flower as F
from fednet.deploy.net import connect_host, join_address, parse_address, port_in_use, probe_server
from fednet.deploy.procs import Child, Supervisor, run_command
from fednet.errors import ConfigError, FednetError

__all__ = ["main", "build_parser", "serve"]

logger = logging.getLogger(__name__)

PROG = "flower-server"
_READY_TIMEOUT_S = 90.0
_REGISTER_BATCH = 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run a fednet federation's server on "
        "Flower's SuperLink and stream the run's log.",
    )
    p.add_argument("--config", default="configs/default.toml", help="TOML preset")
    p.add_argument("--run-dir", default=None, help="output directory (default runs/<time>)")
    p.add_argument(
        "--address",
        default=f"0.0.0.0:{F.DEFAULT_PORT}",
        help="HOST:PORT the SuperLink listens on; clients dial this port "
        f"(default 0.0.0.0:{F.DEFAULT_PORT})",
    )
    sec = p.add_mutually_exclusive_group()
    sec.add_argument(
        "--certs", default=None, help="certificate directory from `make certs` (default: certs)"
    )
    sec.add_argument(
        "--insecure", action="store_true", help="no TLS and no client authentication (testing only)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir after its last completed round",
    )
    p.add_argument("--rounds", type=int, default=None, help="override federation.rounds")
    p.add_argument("--app", default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _json_tail(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        raise ValueError(f"no JSON in: {text.strip()[-300:]!r}")
    return dict(json.loads(text[start:]))


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if not run_dir.is_dir():
            raise ConfigError(f"`--resume` needs an existing `--run-dir`, got {str(run_dir)!r}")
        if not (run_dir / "checkpoint" / "latest.json").is_file():
            logger.warning("no checkpoint in %s yet: the run starts again from round 1", run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        hint = (
            " and holds a checkpoint; pass --resume to continue it"
            if (run_dir / "checkpoint").is_dir()
            else ""
        )
        raise ConfigError(f"`--run-dir` {str(run_dir)!r} exists and is not empty{hint}")


def _security(args: argparse.Namespace, client_ids: Sequence[str]) -> tuple[Path | None, dict]:
    """The certificate directory (None if insecure) and the client keys to register."""
    from fednet.deploy.certs import cert_paths, check_server_cert

    if args.insecure:
        logger.warning(
            "--insecure: no TLS and no client authentication; traffic is in clear "
            "text and any SuperNode that reaches the port can join"
        )
        return None, {}
    paths = cert_paths(args.certs or "certs")
    if not paths.root.is_dir():
        raise ConfigError(
            f"certificate directory {str(paths.root)!r} not found; run "
            "`make certs` (or pass --insecure for a local test)"
        )
    check_server_cert(paths)
    keys = paths.node_pubs()
    if not keys:
        raise ConfigError(
            f"no client keys in {str(paths.nodes)!r}; run `make certs CONFIG=...`"
            " so that clients can authenticate"
        )
    missing = sorted(set(client_ids) - set(keys))
    if missing:
        logger.warning(
            "no key for client(s) %s in %s: they will be refused", ", ".join(missing), paths.nodes
        )
    return paths.root, keys


def _wait_ready(link: Child, host: str, port: int, ca: Path | None) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        rc = link.poll()
        if rc is not None:
            raise FednetError(
                f"flower-superlink exited with status {rc} before it was ready:\n"
                f"{link.log_tail(15)}"
            )
        res = probe_server(host, port, ca_cert=ca, timeout=2.0)
        if res.ok:
            return
        if res.permanent:
            raise FednetError(f"the SuperLink at {host}:{port} is up but {res.reason}")
        if time.monotonic() > deadline:
            raise FednetError(
                f"the SuperLink did not accept connections within "
                f"{_READY_TIMEOUT_S:.0f}s: {res.reason}\n{link.log_tail(15)}"
            )
        time.sleep(0.3)


def _flwr(sup: Supervisor, env: dict[str, str], *args: str, cwd: Path, what: str) -> dict[str, Any]:
    rc, out = sup.run(
        f"flwr {args[0]}",
        [F.flower_bin("flwr"), *args, "--format", "json"],
        env=env,
        cwd=cwd,
        timeout=180,
    )
    return _parse(rc, out, what)


def _parse(rc: int, out: str, what: str) -> dict[str, Any]:
    try:
        data = _json_tail(out)
    except ValueError:
        data = {}
    if rc != 0 or not data.get("success", False):
        detail = data.get("error-message") or out.strip()[-800:]
        raise FednetError(f"{what} failed (flwr exited {rc}): {detail}")
    return data


def _register(sup: Supervisor, env: dict[str, str], keys: dict[str, Path], *, cwd: Path) -> None:
    """``flwr supernode register`` every client key, a few at a time."""
    items = sorted(keys.items())
    for start in range(0, len(items), _REGISTER_BATCH):
        batch = items[start : start + _REGISTER_BATCH]
        children = [
            (
                cid,
                sup.spawn(
                    f"flwr supernode register {cid}",
                    [
                        F.flower_bin("flwr"),
                        "supernode",
                        "register",
                        str(pub),
                        F.CONNECTION,
                        "--format",
                        "json",
                    ],
                    env=env,
                    cwd=cwd,
                    pipe=True,
                ),
            )
            for cid, pub in batch
        ]
        for cid, child in children:
            try:
                out, _ = child.proc.communicate(timeout=180)
            finally:
                sup.stop(child)
            data = _parse(child.proc.returncode, out or "", f"registering the key of client {cid}")
            logger.info("client %s may join (SuperNode %s)", cid, data.get("node-id"))


def serve(args: argparse.Namespace) -> int:
    """Validate the arguments, run the federation, return the exit status."""
    from fednet.config import PROJECT_ROOT, load_preset
    from fednet.federation.apps import new_run_dir

    if args.rounds is not None and args.rounds < 1:
        raise ConfigError(f"`--rounds` must be >= 1, got {args.rounds}")
    cfg = load_preset(args.config)
    preset = Path(cfg.source).resolve()
    host, port = parse_address(args.address)
    run_dir = (
        Path(args.run_dir).expanduser().resolve()
        if args.run_dir
        else (new_run_dir(Path("runs")).resolve())
    )
    _check_run_dir(run_dir, args.resume)
    if args.resume:
        from fednet.federation.checkpoint import check_resume

        check_resume(run_dir, cfg)  # a changed preset is refused before anything starts
    certs, keys = _security(args, [c.id for c in cfg.clients])
    if port_in_use(host, port):
        raise ConfigError(
            f"`--address` {join_address(host, port)} is already in use; stop "
            "what holds it or choose another port"
        )
    app_dir = Path(args.app).resolve() if args.app else PROJECT_ROOT
    deploy = run_dir / "deploy"
    flwr_home = deploy / "flwr-home"
    dial = connect_host(host)
    F.write_connection(
        flwr_home, address=join_address(dial, port), ca_cert=certs / "ca.crt" if certs else None
    )
    staged = F.stage_app(app_dir, deploy / "app")
    env = F.flower_env(flwr_home)
    run_config: dict[str, str | int | float | bool] = {
        "preset": str(preset),
        "run-dir": str(run_dir),
        "resume": bool(args.resume),
        "num-server-rounds": int(args.rounds or 0),
    }

    with Supervisor() as sup:
        link = sup.spawn(
            "superlink",
            F.superlink_command(host=host, port=port, certs_dir=certs, node_auth=certs is not None),
            env=env,
            cwd=deploy,
            log_path=deploy / "superlink.log",
        )
        logger.info(
            "SuperLink starting on %s (log: %s)", join_address(host, port), deploy / "superlink.log"
        )
        _wait_ready(link, dial, port, certs / "ca.crt" if certs else None)
        _register(sup, env, keys, cwd=deploy)
        data = _flwr(
            sup,
            env,
            "run",
            str(staged),
            F.CONNECTION,
            "--run-config",
            F.format_kv(run_config),
            cwd=deploy,
            what="submitting the run",
        )
        run_id = str(data["run-id"])
        logger.info(
            "run %s submitted%s; waiting for %d client(s) to connect to %s",
            run_id,
            " (resume)" if args.resume else "",
            len(cfg.clients),
            join_address(host, port),
        )
        stream = sup.spawn(
            "flwr log",
            [F.flower_bin("flwr"), "log", run_id, F.CONNECTION, "--stream"],
            env=env,
            cwd=deploy,
            pipe=True,
        )
        assert stream.proc.stdout is not None
        for line in stream.proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
        stream.proc.wait()
        if link.poll() is not None:
            raise FednetError(
                f"flower-superlink died during the run (status {link.poll()}):\n{link.log_tail(15)}"
            )
        status = _flwr(
            sup,
            env,
            "list",
            F.CONNECTION,
            "--run-id",
            run_id,
            cwd=deploy,
            what="reading the run status",
        )
    runs = status.get("runs") or [{}]
    state = str(runs[0].get("status", "unknown"))
    summary = run_dir / "summary.json"
    if state != "finished:completed" or not summary.is_file():
        print(
            f"{PROG}: run {run_id} ended with status {state}; see the log above and "
            f"{deploy / 'superlink.log'}",
            file=sys.stderr,
        )
        return 1
    from fednet.federation.recorder import format_summary

    data = json.loads(summary.read_text())
    print(format_summary(data, run_dir))
    print(f"rounds completed: {data.get('rounds_completed')}")
    return 0 if data.get("complete", True) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``flower-server``."""
    from fednet.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, prog=PROG)
    return run_command(PROG, lambda: serve(args), other_error_status=1)


if __name__ == "__main__":
    sys.exit(main())
