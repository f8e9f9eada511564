"""python -m study.dashboard as a real server process on a real SQLite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import optuna
import pytest

from study.dashboard import ReadOnlyMiddleware, is_loopback
from study.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
PROG = "python -m study.dashboard"


def test_read_only_dashboard_lists_but_refuses_every_change(store, dashboard):
    dash = dashboard("--storage", store, "--quiet")
    try:
        [study] = dash.studies()
        assert study["study_name"] == "asl-demo"
        sid = study["study_id"]
        status, body = dash.request("GET", f"/api/studies/{sid}")
        assert status == 200 and len(json.loads(body)["trials"]) == 3
        assert dash.request("GET", "/dashboard")[0] == 200

        status, body = dash.request("DELETE", f"/api/studies/{sid}")
        assert status == 403
        assert "read-only" in json.loads(body)["reason"] and "--allow-writes" in json.loads(body)["reason"]
        # every other mutating route and method is refused too
        assert dash.request("POST", "/api/studies", {"study_name": "new", "directions": ["minimize"]})[0] == 403
        assert dash.request("POST", f"/api/studies/{sid}/rename", {"study_name": "renamed"})[0] == 403
        assert dash.request("PUT", f"/api/studies/{sid}/note", {"version": 1, "body": "x"})[0] == 403
        assert dash.request("PATCH", f"/api/studies/{sid}", {})[0] == 403
        assert dash.request("POST", "/incompatible-rdb-schema")[0] == 403
        assert dash.request("POST", "/api/trials/0/user-attrs", {"user_attrs": {"k": "v"}})[0] == 403

        # The store is untouched, seen from the dashboard and from Optuna directly.
        assert [s["study_name"] for s in dash.studies()] == ["asl-demo"]
    finally:
        code, err = dash.stop()
    assert code == 0, err
    assert any("dashboard stopped" in line for line in dash.lines)
    study = optuna.load_study(study_name="asl-demo", storage=open_storage(store, read_only=True))
    assert len(study.trials) == 3 and study.user_attrs == {"loss": "asl"}
    assert all("k" not in t.user_attrs for t in study.trials)


def test_allow_writes_lets_delete_through(store, dashboard):
    dash = dashboard("--storage", store, "--allow-writes", "--quiet")
    try:
        [study] = dash.studies()
        status, _ = dash.request("DELETE", f"/api/studies/{study['study_id']}")
        assert status == 204
        assert dash.studies() == []
    finally:
        code, err = dash.stop(signal.SIGTERM)
    assert code == 0, err
    assert any("(read-write)" in line for line in dash.lines)
    assert optuna.get_all_study_names(storage=open_storage(store, read_only=True)) == []


def test_storage_from_environment_variable(store, dashboard):
    dash = dashboard("--quiet", env={"LOSSWEEP_STORAGE": store})
    try:
        assert [s["study_name"] for s in dash.studies()] == ["asl-demo"]
    finally:
        dash.stop()
    assert any("(read-only)" in line and store in line for line in dash.lines)


def test_non_loopback_bind_warns(store, dashboard):
    dash = dashboard("--storage", store, "--host", "0.0.0.0", "--quiet")
    code, err = dash.stop()
    assert code == 0
    assert f"{PROG}: warning: listening on 0.0.0.0" in err and "no authentication" in err


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.dashboard", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--storage", "sqlite:///{tmp}/absent.db"], "no lossweep store at sqlite:///{tmp}/absent.db"),
        (["--storage", "mysql://u:hunter2@h/db"], "unsupported storage 'mysql://u:***@h/db'"),
        (["--storage", "not a url"], "malformed storage URL"),
        (
            ["--storage", "postgresql://u:hunter2@127.0.0.1:1/db"],
            "cannot open the study store at postgresql+psycopg://u:***@127.0.0.1:1/db",
        ),
        (["--storage", "sqlite:///{tmp}/dash.db", "--port", "70000"], "--port must be between 0 and 65535"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, store, args, expected):
    args = [a.format(tmp=tmp_path) for a in args]
    result = _run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{PROG}: error: ")
    assert expected.format(tmp=tmp_path) in lines[0]
    assert "hunter2" not in result.stderr + result.stdout
    assert not (tmp_path / "absent.db").exists()


def test_port_in_use_is_a_usage_error(store, dashboard):
    dash = dashboard("--storage", store, "--quiet")
    try:
        port = dash.base.rsplit(":", 1)[1]
        result = _run("--storage", store, "--port", port)
        assert result.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    finally:
        dash.stop()


def test_middleware_passes_reads_and_blocks_writes_in_process():
    calls = []

    def app(environ, start_response):
        calls.append(environ["REQUEST_METHOD"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = ReadOnlyMiddleware(app)
    statuses = {}
    for method in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "PROPFIND"):
        body = b"".join(
            wrapped(
                {"REQUEST_METHOD": method}, lambda status, headers, method=method: statuses.__setitem__(method, status)
            )
        )
        assert (body == b"ok") == (method in ("GET", "HEAD", "OPTIONS"))
    assert calls == ["GET", "HEAD", "OPTIONS"]
    assert {m for m, s in statuses.items() if s.startswith("403")} == {"POST", "PUT", "PATCH", "DELETE", "PROPFIND"}


@pytest.mark.parametrize(
    "host,loopback",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("", False),
        ("10.1.2.3", False),
        ("::", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_the_dashboard_names_the_objective_val_map(tmp_path, dashboard):
    """A study made by study.run names its objective (study.planning.name_objective); optuna-dashboard
    then shows "val mAP" instead of "Objective 0"."""
    from study.planning import name_objective

    url = f"sqlite:///{tmp_path / 'named.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="named", direction="maximize")
    name_objective(study)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    dash = dashboard("--storage", url, "--quiet")
    try:
        [summary] = dash.studies()
        status, body = dash.request("GET", f"/api/studies/{summary['study_id']}")
        assert status == 200
        assert json.loads(body)["objective_names"] == ["val mAP"]
    finally:
        dash.stop()
