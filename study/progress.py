"""What the user sees while a study runs: a progress bar on a terminal, one line per trial.

Both go to stderr (tqdm.write keeps the bar intact; the closing table, ``study.summary``, goes to
stdout). The bar is drawn only when stderr is a terminal: redrawn with carriage returns, it would
fill a log file with frames; there the per-trial lines alone show progress.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

from .logs import logger
from .summary import format_params


class Progress:
    """The progress bar (ETA, best mAP so far) and the per-trial log lines."""

    def __init__(
        self,
        study_name: str,
        n_trials: int,
        finished: int,
        best: float | None,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.best = best
        self.interactive = is_terminal(self.stream)
        self.bar = tqdm(
            total=n_trials,
            initial=finished,
            desc=study_name,
            unit="trial",
            file=self.stream,
            disable=quiet or not self.interactive,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        self._show_best()

    def _show_best(self) -> None:
        if self.best is not None:
            self.bar.set_postfix_str(f"best mAP {self.best:.4f}", refresh=True)

    def log(self, line: str) -> None:
        if not self.quiet:
            tqdm.write(line, file=self.stream)

    def warn(self, line: str) -> None:
        """Warnings show even with --quiet (the ``lossweep`` logger writes them around the bar)."""
        logger().warning(line)

    def trial_finished(self, event: dict[str, Any]) -> None:
        status = event["status"]
        outcome = f"mAP {event['value']:.4f}" if status == "complete" else f"{status}: {event.get('fail_reason')}"
        self.log(
            f"trial {event['number']:>4} (design {event['design_index']}) "
            f"{format_params(event['params'])}  {outcome}  {event['seconds']:.1f}s"
        )
        if status == "complete" and event["value"] is not None and (self.best is None or event["value"] > self.best):
            self.best = float(event["value"])
            self._show_best()

    def update(self, finished: int) -> None:
        """Move the bar to ``finished`` (from the store: counts other machines' trials too)."""
        if finished > self.bar.n:
            self.bar.update(finished - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
