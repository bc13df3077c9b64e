"""The documentation of every config field, read from the docstrings under them in config.py.

config.py documents a field with the string right below it; this module parses that source
once (with `ast`, nothing is executed) so that `storm-wm config` prints the same text.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Any

from storm_wm import config as config_module
from storm_wm.config import Config


@dataclass(frozen=True)
class FieldDoc:
    name: str
    """Dotted name, as given on the command line (`agent.gamma`)."""
    type: str
    value: Any
    """The value under the preset asked for."""
    doc: str
    """The docstring under the field in config.py (empty where there is none)."""


@functools.cache
def _docstrings() -> dict[str, dict[str, str]]:
    """{class name: {field name: docstring}} for every class in config.py."""
    tree = ast.parse(inspect.getsource(config_module))
    found: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        docs = found.setdefault(node.name, {})
        for current, following in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(current, ast.AnnAssign)
                and isinstance(current.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[current.target.id] = inspect.cleandoc(following.value.value)
    return found


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return f"tuple[{typing.get_args(kind)[0].__name__}, ...]"
    return getattr(kind, "__name__", str(kind))


def field_docs(config: Config) -> list[FieldDoc]:
    """Every field of `config` in declaration order, with its type, value and documentation."""
    docs = _docstrings()
    rows: list[FieldDoc] = []
    top_hints = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        value = getattr(config, section.name)
        if dataclasses.is_dataclass(value):
            hints = typing.get_type_hints(type(value))
            section_docs = docs.get(type(value).__name__, {})
            rows += [
                FieldDoc(
                    f"{section.name}.{field.name}",
                    _type_name(hints[field.name]),
                    getattr(value, field.name),
                    section_docs.get(field.name, ""),
                )  # fmt: skip
                for field in dataclasses.fields(value)
            ]
        else:
            doc = docs.get("Config", {}).get(section.name, "")
            rows.append(FieldDoc(section.name, _type_name(top_hints[section.name]), value, doc))
    return rows
