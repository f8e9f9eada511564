"""Command-line flags for the options a space may declare, shared by ``python -m search_spaces`` and ``study.run``."""

from __future__ import annotations

import argparse

# Flags for the options a space may declare (``Space(options=...)``): flag -> option name. They are
# collected as (name, value) pairs into ``args.space_options`` and handed to ``get_space(options=)``,
# which refuses one the loss's space does not declare.
OPTION_FLAGS = {
    "--n-alpha": ("n_alpha", "M", "RAL: polynomial terms on positives (default: the space's own)"),
    "--n-beta": ("n_beta", "N", "RAL: polynomial terms on negatives (default: the space's own)"),
}


def add_option_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The space-option flags, each appending ``(option, int value)`` to ``space_options``."""
    for flag, (option, metavar, help_text) in OPTION_FLAGS.items():

        def pair(text: str, option: str = option, flag: str = flag) -> tuple[str, int]:
            try:
                return option, int(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{flag} takes an integer, got {text!r}") from None

        parser.add_argument(
            flag, dest="space_options", action="append", type=pair, metavar=metavar, default=None, help=help_text
        )
