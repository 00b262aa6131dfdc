"""One exception type for bad input, and the wrapper that turns it into one line and exit 2."""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import threading
from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user: a one-line message that names the problem and the fix (exit 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C wherever the command is, so that every `finally` runs and
    temporary files and scratch folders are removed before the process ends."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are UserErrors: one line and exit 2 through cli_entry, where plain
    argparse prints its usage too. Subcommand parsers inherit it."""

    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def cli_entry(prog: str) -> Callable[[Callable[[list[str] | None], int | None]], Callable]:
    """Wrap a CLI main: UserError -> exit 2, any other failure -> exit 1, one line on stderr;
    Ctrl-C -> 130 and SIGTERM -> 143, each after cleaning up (see Terminated).

    `--debug` anywhere on the command line re-raises, so the traceback is shown.
    """

    def wrap(main: Callable[[list[str] | None], int | None]) -> Callable:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            args = sys.argv[1:] if argv is None else argv
            debug = "--debug" in args
            # Signal handlers can only be set from the main thread (tests call mains elsewhere).
            handles = threading.current_thread() is threading.main_thread()
            previous = signal.signal(signal.SIGTERM, _terminated) if handles else None
            try:
                return main(args) or 0
            except UserError as e:
                if debug:
                    raise
                print(f"{prog}: error: {e}", file=sys.stderr)
                return 2
            except Terminated:
                print(f"{prog}: terminated", file=sys.stderr)
                return 143
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
                if debug:
                    raise
                text = str(e).strip()
                reason = f"{type(e).__name__}: {text.splitlines()[0] if text else 'no message'}"
                print(f"{prog}: failed: {reason} (rerun with --debug for details)", file=sys.stderr)
                return 1
            finally:
                if handles:  # `previous` is None when it was not set from Python: the default
                    signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)

        return run

    return wrap
