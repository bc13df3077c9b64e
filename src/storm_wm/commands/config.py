"""`storm-wm config`: every config field with its value under a preset, its type and meaning."""

from __future__ import annotations

import argparse
import json
import textwrap

from storm_wm.config import PRESETS, build_config


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="list every config field with its default and meaning",
        description="List every config field (each can be set on `storm-wm train` as "
        "--SECTION.FIELD VALUE) with its type, its value under the preset and what it means.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--preset", default="atari100k", help=f"one of {', '.join(PRESETS)}; stack with +"
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per field instead of text"
    )
    parser.set_defaults(func=run)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def run(args: argparse.Namespace) -> int:
    from storm_wm.config_docs import field_docs

    rows = field_docs(build_config(args.preset))
    if args.json:
        for row in rows:
            value = list(row.value) if isinstance(row.value, tuple) else row.value
            record = {"name": row.name, "type": row.type, "value": value, "doc": row.doc}
            print(json.dumps(record))
        return 0
    print(f"config fields under --preset {args.preset} (set any with --SECTION.FIELD VALUE):")
    for row in rows:
        print(f"\n--{row.name} {_show(row.value)}  ({row.type})")
        if row.doc:
            print(textwrap.indent(textwrap.fill(" ".join(row.doc.split()), 88), "    "))
    return 0
