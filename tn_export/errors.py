"""One exception type for bad input, and the wrapper that turns it into one line and exit 2."""

from __future__ import annotations

import functools
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping


class UserError(Exception):
    """Bad input from the user: a one-line message that names the problem and the fix (exit 2).

    The library words it in its own terms: `params` are the parameters and settings it names
    as the Python API spells them (tile_pixels, max_size), which a command rewords as its flags
    (`worded`, through cli_entry's `flags`).
    """

    def __init__(self, message: str, *params: str) -> None:
        super().__init__(message)
        self.params = params

    def worded(self, flags: Mapping[str, str]) -> str:
        """The message with each of its params that `flags` maps written as that flag."""
        text = str(self)
        for param in self.params:
            if param in flags:
                text = re.sub(rf"(?<![\w-]){re.escape(param)}(?![\w-])", flags[param], text)
        return text


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C wherever the command is, so that every `finally` runs and
    temporary files and scratch folders are removed before the process ends."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated


def cli_entry(
    prog: str, flags: Mapping[str, str] | None = None
) -> Callable[[Callable[[list[str] | None], int | None]], Callable]:
    """Wrap a CLI main: UserError -> exit 2, any other failure -> exit 1, one line on stderr;
    Ctrl-C -> 130 and SIGTERM -> 143, each after cleaning up (see Terminated). `flags` maps the
    library's parameter names to the command's flags, e.g. {"tile_pixels": "--tile-pixels"}.

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
                print(f"{prog}: error: {e.worded(flags or {})}", file=sys.stderr)
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
