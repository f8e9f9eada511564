"""``python -m search_spaces [LOSS] [--mode M] [--nuisance] [--space FILE]``: print a search space.

Shows what a study would sweep (ranges, scales, defaults) and what it would hold fixed, so that a
``--space`` override file can be checked before a long study is launched.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import MODES, SearchSpace, add_option_flags, get_space, loss_names, space_options

PROG = "python -m search_spaces"


def format_space(space: SearchSpace) -> str:
    """A plain-text table of a space, one row per parameter (swept first, then fixed)."""
    header = f"{space.loss} ({space.mode}{', nuisance' if space.nuisance else ''}): {space.dim} swept"
    rows = [("parameter", "low", "high", "scale", "default", "doc")]
    rows += [
        (p.name, f"{p.low:g}", f"{p.high:g}", "log" if p.log else "linear", f"{p.default:g}", p.doc)
        for p in space.params
    ]
    rows += [(name, "", "", "fixed", f"{value:g}", "") for name, value in space.fixed.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [header]
    for row in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    return "\n".join(line.rstrip() for line in lines)


def _error(exc: ValueError) -> int:
    print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Print the search space of a loss (all losses when none is named)."
    )
    try:
        names = loss_names()
    except ValueError as exc:  # e.g. a LOSSWEEP_LOSS_MODULES entry that does not exist
        return _error(exc)
    parser.add_argument("loss", nargs="?", choices=names, help="loss to show (default: every loss)")
    parser.add_argument("--mode", choices=MODES, default="full")
    parser.add_argument("--nuisance", action="store_true", help="also sweep lr and weight_decay")
    add_option_flags(parser)
    parser.add_argument("--space", metavar="FILE", help="TOML overrides to apply (checked for mistakes)")
    parser.add_argument("--json", action="store_true", help="print the JSON stored in a study instead of a table")
    args = parser.parse_args(argv)
    if args.space and not args.loss:
        parser.error(
            "--space FILE overrides one loss's space: name the loss too, e.g. python -m search_spaces ral --space FILE"
        )
    try:
        spaces = []
        options = dict(args.space_options or ())
        for loss in [args.loss] if args.loss else names:
            if not args.loss:  # every loss: each takes the options its space declares
                declared = space_options(loss)
                mine = {k: v for k, v in options.items() if k in declared}
            else:
                mine = options
            spaces.append(get_space(loss, args.mode, nuisance=args.nuisance, options=mine, overrides=args.space))
    except ValueError as exc:
        return _error(exc)
    if args.json:
        print(json.dumps([s.to_dict() for s in spaces] if len(spaces) > 1 else spaces[0].to_dict(), indent=2))
    else:
        print("\n\n".join(format_space(s) for s in spaces))
    return 0


if __name__ == "__main__":
    sys.exit(main())
