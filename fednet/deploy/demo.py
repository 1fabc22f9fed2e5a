"""``make deploy-demo``: a whole deployment on this machine, then a clean exit.

Writes fresh certificates and client keys into ``<dir>/certs``, starts
``flower-server`` and one ``flower-client`` per client of the preset on
loopback (each its own process, TLS and node authentication on), waits for
the run to finish and stops the clients. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fednet.deploy.procs import Shutdown, Supervisor

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return flower-server's exit status."""
    from fednet.config import load_preset
    from fednet.deploy.certs import make_certs
    from fednet.deploy.flower import flower_bin
    from fednet.deploy.net import free_port
    from fednet.federation.apps import new_run_dir
    from fednet.logs import setup_logging

    p = argparse.ArgumentParser(prog="python -m fednet.deploy.demo", description=__doc__)
    p.add_argument("--config", default="configs/deploy-tiny.toml")
    p.add_argument("--dir", default=None, help="demo directory (default runs/<time>)")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    args = p.parse_args(argv)
    setup_logging(prog="deploy-demo")
    cfg = load_preset(args.config)
    base = Path(args.dir or new_run_dir(Path("runs"))).resolve()
    run_dir, states = base / "run", base / "clients"
    certs = make_certs(base / "certs", client_ids=[c.id for c in cfg.clients]).root
    port = args.port or free_port()
    server = f"127.0.0.1:{port}"
    preset = str(Path(cfg.source).resolve())
    print(f"deploy-demo: {len(cfg.clients)} clients of {preset} on {server}, run in {run_dir}")
    try:
        with Supervisor() as sup:
            srv = sup.spawn(
                "flower-server",
                [
                    flower_bin("flower-server"),
                    "--config",
                    preset,
                    "--run-dir",
                    str(run_dir),
                    "--address",
                    server,
                    "--certs",
                    str(certs),
                ],
            )
            for c in cfg.clients:
                sup.spawn(
                    f"flower-client {c.id}",
                    [
                        flower_bin("flower-client"),
                        "--server",
                        server,
                        "--client",
                        c.id,
                        "--config",
                        preset,
                        "--certs",
                        str(certs / "clients" / c.id),  # this client's bundle only
                        "--state-dir",
                        str(states / c.id),  # its own ledger, cache and owner key
                    ],
                )
            while (rc := srv.poll()) is None:
                time.sleep(0.5)
    except (Shutdown, KeyboardInterrupt):
        print("deploy-demo: stopped; every process it started has ended", file=sys.stderr)
        return 130
    print(f"deploy-demo: flower-server exited with status {rc}; clients stopped")
    return rc


if __name__ == "__main__":
    sys.exit(main())
