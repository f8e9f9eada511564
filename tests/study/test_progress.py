"""What a run shows: a bar only on a terminal, plain per-trial lines elsewhere, warnings through the logger."""

from __future__ import annotations

import io
import logging

from study.logs import NAME, logger
from study.progress import Progress

EVENT = {"number": 3, "design_index": 2, "params": {"gamma": 1.5}, "status": "complete", "value": 0.5, "seconds": 1.0}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_and_no_carriage_returns_when_the_stream_is_a_file():
    stream = io.StringIO()
    progress = Progress("s", 10, 0, None, stream=stream)
    progress.trial_finished(EVENT)
    progress.update(1)
    assert progress.bar.disable
    progress.close()
    assert stream.getvalue() == "trial    3 (design 2) gamma=1.5  mAP 0.5000  1.0s\n"


def test_a_terminal_gets_the_bar():
    stream = Terminal()
    progress = Progress("s", 10, 0, None, stream=stream)
    progress.update(1)
    drawn = not progress.bar.disable
    progress.close()
    assert drawn and "\r" in stream.getvalue()


def test_quiet_keeps_warnings_only(capsys):
    progress = Progress("s", 10, 0, None, quiet=True, stream=Terminal())
    progress.trial_finished(EVENT)
    progress.warn("worker 0 died")
    logger().info("a diagnostic")  # hidden by default (LOSSWEEP_LOG_LEVEL=info shows it)
    progress.close()
    assert capsys.readouterr().err == "worker 0 died\n"
    assert logging.getLogger(NAME).level == logging.WARNING
