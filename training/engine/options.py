"""Command-line flags and config files from one dataclass.

Every field of a config dataclass becomes a ``--flag`` (underscores become dashes, the
field's ``help`` metadata is the help text). ``--config FILE`` (JSON or TOML) sets fields
first; flags given on the command line override it. A ``Literal[...]`` field accepts only its
values, on the command line (argparse ``choices``) and in a config file alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _none_or(kind: type) -> typing.Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, annotation: Any) -> None:
    flag = "--" + field.name.replace("_", "-")
    help_text = field.metadata.get("help", "")
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
    help_text = f"{help_text} (default: {default})" if help_text else f"default: {default}"
    kind = _unwrap_optional(annotation)
    origin = typing.get_origin(kind)
    common = {"dest": field.name, "default": argparse.SUPPRESS, "help": help_text}
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        parser.add_argument(flag, type=type(choices[0]), choices=choices, **common)
    elif kind is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
    elif origin in (tuple, list):
        item = typing.get_args(kind)[0]
        parser.add_argument(flag, nargs="+", type=item, metavar=item.__name__.upper(), **common)
    elif origin is dict or kind is dict:
        parser.add_argument(flag, type=json.loads, metavar="JSON", **common)
    else:
        parser.add_argument(flag, type=_none_or(kind), metavar=kind.__name__.upper(), **common)


def build_parser(cls: type, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, help="JSON or TOML file with any of the options below")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        _add_field(parser, field, hints[field.name])
    return parser


def load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)


def from_mapping(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """Build ``cls`` from a mapping, refusing unknown keys and fixing tuple types."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    fixed = {}
    for key, value in values.items():
        kind = _unwrap_optional(hints[key])
        optional = kind is not hints[key]  # None is a value of an optional field (a saved config.json has it)
        literal = typing.get_origin(kind) is typing.Literal
        if literal and value not in typing.get_args(kind) and not (optional and value is None):
            choices = ", ".join(map(str, typing.get_args(kind)))
            raise ValueError(f"{key} must be one of {choices}; got {value!r}")
        fixed[key] = tuple(value) if typing.get_origin(kind) is tuple and value is not None else value
    return cls(**fixed)


def parse_config(cls: type[ConfigT], argv: list[str] | None = None, **parser_kwargs: Any) -> ConfigT:
    """Defaults, then ``--config FILE``, then explicit flags."""
    parser = build_parser(cls, **parser_kwargs)
    args = vars(parser.parse_args(argv))
    config_path = args.pop("config", None)
    values: dict[str, Any] = {}
    if config_path is not None:
        try:
            values.update(load_config_file(config_path))
        except (OSError, ValueError) as error:
            parser.error(f"cannot read --config {config_path}: {error}")
    values.update(args)
    try:
        return from_mapping(cls, values)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits
