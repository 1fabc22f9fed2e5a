"""``fednet privacy``: reset and benchmark privacy ledgers."""

from __future__ import annotations

import argparse

from fednet.cli._common import add_command, add_subcommands

__all__ = ["register", "cmd_privacy"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "privacy", help="privacy ledgers: reset, benchmark")
    priv = add_subcommands(p, "privacy_command")
    reset = add_command(
        priv,
        "reset-ledger",
        help="retire a client's privacy ledger(s) so its budget starts again (logged)",
        description="Retire a client's privacy ledger(s) so its budget starts again. Nothing "
        "is deleted: each ledger is renamed to <ledger>.json.reset-<time> and the reset is "
        "recorded in <state-dir>/<client>/ledger-resets.log.",
    )
    reset.add_argument("--state-dir", required=True, help="state directory root")
    reset.add_argument("--client", required=True, help="client id")
    reset.add_argument("--fingerprint", help="only the ledger of this data fingerprint")
    bench = add_command(priv, "bench-ledger", help="time an epsilon query on a long ledger")
    bench.add_argument("--releases", type=int, default=1000, help="releases in the ledger")
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
