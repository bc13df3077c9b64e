"""`storm-wm config`: every config field with its value under a preset, its type and meaning."""

from __future__ import annotations

import argparse
import json
import textwrap

from storm_wm.config import build_config, settings, type_name
from storm_wm.options import add_config_options, preset_of


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="list every config field with its default and meaning",
        description="List every config field (each can be set on `storm-wm train` as "
        "--SECTION.FIELD VALUE) with its type, its value under the preset and what it means.",
        allow_abbrev=False,
    )
    add_config_options(parser)
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per field instead of text"
    )
    parser.set_defaults(func=run)


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def run(args: argparse.Namespace) -> int:
    config = build_config(preset_of(args))
    if args.json:
        for setting in settings():
            value = setting.value(config)
            value = list(value) if isinstance(value, tuple) else value
            record = {"name": setting.name, "type": type_name(setting.kind), "value": value}
            print(json.dumps({**record, "doc": setting.meaning}))
        return 0
    print(f"config fields under --preset {config.preset} (set any with --SECTION.FIELD VALUE):")
    for setting in settings():
        print(f"\n--{setting.name} {_show(setting.value(config))}  ({type_name(setting.kind)})")
        print(textwrap.indent(textwrap.fill(" ".join(setting.meaning.split()), 88), "    "))
    return 0
