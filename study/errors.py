"""One-line errors for command-line users.

A user mistake (a wrong flag, an unknown loss, an unreachable database, a bad file) must end the
program with one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
import typing
from collections.abc import Callable
from typing import TypeVar

EXIT_USAGE = 2

F = TypeVar("F", bound=Callable[..., int | None])


class UsageError(Exception):
    """A problem the user can fix; its message says what to do."""


def cli_entry(prog: str) -> Callable[[F], F]:
    """Wrap a ``main(argv) -> int`` so UsageError and ValueError become ``prog: error: …`` and exit 2.

    ValueError is included because the libraries' boundary checks (data sets, search spaces, metrics)
    raise it with a message written for the user.
    """

    def decorate(main: F) -> F:
        @functools.wraps(main)
        def wrapped(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except (UsageError, ValueError, FileNotFoundError) as exc:
                message = " ".join(str(exc).split()) or type(exc).__name__
                print(f"{prog}: error: {message}", file=sys.stderr)
                return EXIT_USAGE

        return wrapped  # type: ignore[return-value]

    return decorate


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are two short lines, not the whole usage: what to type, and what went wrong.

    The full usage of ``python -m study.run`` runs to 40 lines and buries the one that matters;
    ``--help`` still prints all of it. Exit code 2, as argparse's own errors.
    """

    def error(self, message: str) -> typing.NoReturn:
        required = " ".join(
            f"{a.option_strings[0]} {a.metavar or a.dest.upper()}" if a.option_strings else str(a.metavar or a.dest)
            for a in self._actions  # stdlib argparse keeps every action here
            if a.required
        )
        usage = f"usage: {self.prog} {required} [options]".replace("  ", " ") + " (see --help)"
        self.exit(EXIT_USAGE, f"{usage}\n{self.prog}: error: {message}\n")
