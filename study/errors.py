"""One-line errors for command-line users.

A user mistake (a wrong flag, an unknown loss, an unreachable database, a bad file) must end the
program with one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import sys
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
