"""Command-line flags generated from the config dataclasses, so flags and fields cannot drift.

Every field of a config dataclass becomes ``--<prefix><field-name-with-dashes>``; its type
comes from the annotation (int, float, str, bool, ``X | None``, ``Literal[...]``, tuples as
comma-separated lists) and its help from the field's comment in the source.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin

__all__ = ["add_config_flags", "config_from_flags", "field_comments"]


def field_comments(cls: type) -> dict[str, str]:
    """The ``# comment`` after each field in the class source (the field's documentation)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # pragma: no cover - no source (frozen app)
        return {}
    comments = {}
    for line in source.splitlines():
        match = re.match(r"\s+(\w+):[^#]*#\s*(.+)$", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        if len(args) == 1:
            return args[0], optional
        return args, optional
    return annotation, False


def _parser_for(annotation: Any, name: str) -> tuple[Any, dict[str, Any]]:
    base, optional = _strip_optional(annotation)

    def none_or(convert: Any) -> Any:
        def parse(text: str) -> Any:
            if optional and text.lower() in ("none", "null", ""):
                return None
            return convert(text)

        parse.__name__ = getattr(convert, "__name__", "value")
        return parse

    if isinstance(base, list):  # e.g. int | str, int | float
        def union(text: str) -> Any:
            if optional and text.lower() in ("none", "null"):
                return None
            for candidate in (int, float):
                if candidate in base:
                    try:
                        return candidate(text)
                    except ValueError:
                        pass
            if str in base:
                return text
            raise argparse.ArgumentTypeError(f"invalid value for --{name}: {text!r}")

        return union, {}
    if get_origin(base) is Literal:
        return none_or(str), {"choices": list(get_args(base)) + (["none"] if optional else [])}
    if base is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if get_origin(base) is tuple:
        item = get_args(base)[0] if get_args(base) else str
        item_base, _ = _strip_optional(item)
        convert = int if item_base is int else float if item_base is float else str

        def parse_tuple(text: str) -> Any:
            if optional and text.lower() in ("none", "null", "all"):
                return None
            return tuple(convert(v.strip()) for v in text.split(",") if v.strip())

        return parse_tuple, {"metavar": "A,B,..."}
    if base in (int, float, str):
        return none_or(base), {}
    return None, {}


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, prefix: str = "", group_title: str | None = None,
                     skip: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> None:
    """Add one flag per field of dataclass ``cls`` (defaults are left to the dataclass).

    ``defaults`` (a label -> instance of ``cls``, e.g. one per recipe) puts each field's
    default in its help: ``(default: X)``, or ``(default: synthetic X; real speech Y)`` where
    the instances differ; without it, the dataclass's own default is shown.
    """
    group = parser.add_argument_group(group_title or cls.__name__)
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        convert, extra = _parser_for(hints[f.name], f.name)
        if convert is None and "action" not in extra:
            continue  # nested configs and other types have their own flags
        flag = "--" + prefix + f.name.replace("_", "-")
        dest = (prefix + f.name).replace("-", "_")
        values = {label: getattr(instance, f.name) for label, instance in (defaults or {}).items()}
        if not values and f.default is not dataclasses.MISSING:
            values = {"": f.default}
        shown = ""
        if values and len({repr(v) for v in values.values()}) == 1:
            shown = f" (default: {_shown(next(iter(values.values())))})"
        elif values:
            shown = " (default: " + "; ".join(f"{label} {_shown(v)}" for label, v in values.items()) + ")"
        help_text = (comments.get(f.name, "") + shown).replace("%", "%%")
        kwargs = {"dest": dest, "default": argparse.SUPPRESS, "help": help_text}
        if convert is not None:
            kwargs["type"] = convert
        kwargs.update(extra)
        group.add_argument(flag, **kwargs)


def config_from_flags(base: Any, args: argparse.Namespace, prefix: str = "") -> Any:
    """``base`` with the fields given on the command line replaced."""
    dest_prefix = prefix.replace("-", "_")
    changes = {}
    for f in dataclasses.fields(base):
        dest = dest_prefix + f.name
        if hasattr(args, dest):
            changes[f.name] = getattr(args, dest)
    if not changes:
        return base
    return dataclasses.replace(base, **changes)
