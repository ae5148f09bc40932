"""Command lines generated from config dataclasses, so a flag and its config field cannot drift.

Every field becomes ``--field-name`` (``--field_name`` works too), with the help text of its
``metadata={"help": ...}``, the extra spellings of ``metadata={"aliases": [...]}`` and the field's
default; a boolean field that defaults to True gets ``--no-field-name``. This is transformers'
``HfArgumentParser``, as in Tevatron. As there, a JSON file of field values may come first: its
values replace the defaults, and flags after it override them::

    python -m simlm_ir.train.finetune stage1.json --lr 1e-5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Sequence, TypeVar

from simlm_ir.errors import InputFormatError

T = TypeVar("T")


def arg(default=dataclasses.MISSING, help: str | None = None, *, aliases: Sequence[str] = (),
        choices: Sequence | None = None):
    """A config field with its command-line help, extra flag spellings and allowed values; a field
    without a default is a required flag."""
    metadata = {"help": help} if help else {}
    if aliases:
        metadata["aliases"] = list(aliases)
    if choices:
        metadata["choices"] = list(choices)
    return dataclasses.field(default=default, metadata=metadata)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Module docstrings (with their examples) kept as written, defaults shown after each help."""

    def _get_help_string(self, action):
        if action.required or action.default in (None, False) or action.help is None:
            return action.help
        return super()._get_help_string(action)


def config_parser(config_cls: type | Sequence[type], prog: str, description: str | None = None):
    """The argument parser of the fields of ``config_cls`` (or of several config classes, each in the
    argument group its ``_argument_group_name`` names)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(config_cls, prog=prog, description=description, formatter_class=_Formatter)
    for action in parser._actions:  # show Pyserini-style --field-name first (usage, help)
        action.option_strings.sort(key=lambda s: "_" in s)
    return parser


def read_json_config(path, names: set[str]) -> dict:
    """Field values from a JSON object; a key that is not one of ``names`` is an error."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFormatError(path, None, f"cannot read the config file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    if not isinstance(values, dict):
        raise InputFormatError(path, None, "expected a JSON object of config fields")
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputFormatError(path, None, f"unknown config field(s) {', '.join(unknown)}; "
                                           f"the fields are {', '.join(sorted(names))}")
    return values


def parse_configs(config_classes: Sequence[type], argv: Sequence[str] | None = None, *, prog: str,
                  description: str | None = None) -> tuple:
    """One instance of each config class from command-line flags, after an optional leading JSON
    config file (one object holding fields of any of the classes).

    Bad flags exit with argparse's usage message (status 2); a bad config file too, naming it.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = config_parser(list(config_classes), prog, description)
    names = [[f.name for f in dataclasses.fields(cls) if f.init] for cls in config_classes]
    if argv and argv[0].endswith(".json") and not argv[0].startswith("-"):
        path = argv.pop(0)
        try:
            values = read_json_config(path, {n for ns in names for n in ns})
        except InputFormatError as exc:
            parser.error(str(exc))
        for action in parser._actions:
            if action.dest in values:
                action.required = False
        parser.set_defaults(**values)
    args = parser.parse_args(argv)
    return tuple(cls(**{n: getattr(args, n) for n in ns}) for cls, ns in zip(config_classes, names))


def parse_config(config_cls: type[T], argv: Sequence[str] | None = None, *, prog: str,
                 description: str | None = None) -> T:
    """:func:`parse_configs` for one config class."""
    return parse_configs([config_cls], argv, prog=prog, description=description)[0]
