"""What the user sees while a study runs: a progress bar, one line per trial, and a closing summary.

The bar and the per-trial lines go to stderr (tqdm.write keeps the bar intact), the summary to
stdout, so ``python -m study.run ... > summary.txt`` keeps just the table.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from .design import Ledger


def format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


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
        self.bar = tqdm(
            total=n_trials,
            initial=finished,
            desc=study_name,
            unit="trial",
            file=self.stream,
            disable=quiet,
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
        """Warnings show even with --quiet."""
        tqdm.write(line, file=self.stream)

    def trial_finished(self, event: dict[str, Any]) -> None:
        status = event["status"]
        outcome = f"mAP {event['value']:.4f}" if status == "complete" else f"{status}: {event.get('fail_reason')}"
        self.log(
            f"trial {event['number']:>4} (design {event['design_index']}) {format_params(event['params'])}  "
            f"{outcome}  {event['seconds']:.1f}s"
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


@dataclass
class Summary:
    """The numbers of the closing table, from the study's trials."""

    study_name: str
    n_trials: int
    complete: int
    diverged: int
    failed_indices: list[int]  # design indices that exhausted their retries
    failed_attempts: int  # every non-diverged FAIL, including ones retried successfully
    interrupted: int
    values: list[float] = field(default_factory=list)
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_number: int | None = None

    @classmethod
    def from_trials(cls, study_name: str, trials: Sequence[FrozenTrial], n_trials: int, max_retries: int) -> Summary:
        ledger = Ledger.from_trials(trials, n_trials, max_retries)
        finished = [t for k, t in ledger.finished.items() if k < n_trials]
        complete = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
        # cast: ``complete`` holds only trials with a value.
        best = max(complete, key=lambda t: cast(float, t.value)) if complete else None
        failed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("status") != "diverged"]
        return cls(
            study_name=study_name,
            n_trials=n_trials,
            complete=len(complete),
            diverged=len(finished) - len(complete),
            failed_indices=ledger.exhausted(),
            failed_attempts=len(failed),
            interrupted=sum(1 for t in failed if t.user_attrs.get("fail_reason") == "interrupted"),
            values=[float(cast(float, t.value)) for t in complete],
            best_value=None if best is None else float(cast(float, best.value)),
            best_params={} if best is None else dict(best.params),
            best_number=None if best is None else best.number,
        )

    @property
    def finished(self) -> int:
        return self.complete + self.diverged

    def rows(self) -> list[tuple[str, str]]:
        mean = statistics.fmean(self.values) if self.values else math.nan
        std = statistics.stdev(self.values) if len(self.values) > 1 else math.nan
        rows = [
            ("study", self.study_name),
            ("trials finished", f"{self.finished} / {self.n_trials}"),
            ("complete", str(self.complete)),
            ("diverged", str(self.diverged)),
            ("failed (retries exhausted)", str(len(self.failed_indices))),
            ("failed attempts (all)", f"{self.failed_attempts} ({self.interrupted} interrupted)"),
            ("val mAP mean +- std", f"{mean:.4f} +- {std:.4f}" if self.values else "-"),
            ("val mAP min / max", f"{min(self.values):.4f} / {max(self.values):.4f}" if self.values else "-"),
            ("best trial", "-" if self.best_number is None else f"#{self.best_number}: mAP {self.best_value:.4f}"),
            ("best params", format_params(self.best_params) if self.best_params else "-"),
        ]
        return rows

    def render(self) -> str:
        rows = self.rows()
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
