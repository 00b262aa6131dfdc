"""What every command line here shares: errors in one line, each option's default in its help,
--version from the installed package, and defaults taken from the config they fill."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from . import __version__
from .errors import UserError


class HelpFormatter(argparse.HelpFormatter):
    """Help that ends each option's text with its default, unless the text already says it or
    there is none to say (required options, on/off flags that are off, None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        nothing = default is None or default is False or default is argparse.SUPPRESS
        if "default" in text or action.required or nothing:
            return text
        return f"{text} (default: {str(default).replace('%', '%%')})"


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are UserErrors: one line and exit 2 through cli_entry, where plain
    argparse prints its usage too. Subcommand parsers inherit it, and its help formatter."""

    def __init__(self, *args: Any, formatter_class: type = HelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def command_parser(prog: str, description: str) -> ArgumentParser:
    """The top-level parser of a command, with --version (e.g. `tn-run 0.1.0`)."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    return parser


def defaults(config: type) -> dict[str, Any]:
    """The defaults of a config dataclass's fields, by name (factories called), so that a
    parser shows and uses the values the config itself would take."""
    values = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


def flags(*configs: type) -> dict[str, str]:
    """Each config field's flag (descriptor_weights: --descriptor-weights), for cli_entry to
    reword the library's errors, which name the fields as Python spells them."""
    return {f.name: "--" + f.name.replace("_", "-") for c in configs for f in dataclasses.fields(c)}


def given(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The parsed options named like `config`'s fields, ready for `config(**...)`: the one place
    a command's options become its config, field for field."""
    names = {f.name for f in dataclasses.fields(config)}
    return {k: v for k, v in vars(args).items() if k in names}
