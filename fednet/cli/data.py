"""``fednet data check``: what a client would read from a data file."""

from __future__ import annotations

import argparse

from fednet.cli._common import add_command, add_subcommands

__all__ = ["register", "cmd_data"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "data", help="check a data file before a federation reads it")
    data = add_subcommands(p, "data_command")
    check = add_command(
        data,
        "check",
        help="rows read, kept and dropped, label counts, duplicates and encoding",
        description="Read FILE as a client would and print the rows read, kept and dropped "
        "(with the reason), the label counts, duplicates and the encoding.",
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
