"""A real dashboard server process on a real SQLite store, for the dashboard tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import optuna
import pytest

from study.storage import open_storage


@pytest.fixture
def store(tmp_path):
    """A store holding one finished study with a few trials."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="asl-demo", direction="maximize")
    study.set_user_attr("loss", "asl")
    study.optimize(lambda t: 1 - (t.suggest_float("gamma_neg", 0, 6) - 4) ** 2 / 36, n_trials=3)
    return url


class Dashboard:
    """A dashboard subprocess; reads the URL it prints and talks HTTP to it."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "study.dashboard", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._wait_for_url()

    def _wait_for_url(self) -> None:
        found: list[str] = []

        def read() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.lines.append(line)
                m = re.search(r"open (http://\S+?):(\d+)/dashboard", line)
                if m and not found:
                    found.append(f"http://127.0.0.1:{m.group(2)}")

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 600  # generous: a server importing optuna-dashboard on a busy machine
        while not found and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not found:
            self.stop()
            raise AssertionError(f"dashboard did not start: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.base = found[0]
        # poll until the API answers
        while time.monotonic() < deadline:
            try:
                self.request("GET", "/api/meta")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise AssertionError("dashboard never answered")

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def studies(self) -> list[dict]:
        status, body = self.request("GET", "/api/studies")
        assert status == 200
        return json.loads(body)["study_summaries"]

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode, self.proc.stderr.read()  # type: ignore[union-attr]


@pytest.fixture
def dashboard():
    """Start ``python -m study.dashboard ARGS`` (on a free port); every one is stopped at teardown."""
    started: list[Dashboard] = []

    def start(*args: str, env: dict | None = None) -> Dashboard:
        dash = Dashboard(*args, env=env)
        started.append(dash)
        return dash

    yield start
    for dash in started:
        dash.stop()
