"""The run's worker (kcircuits.worker): a job forked by it behaves as the same command in a fresh
interpreter -- its streams, exit status, working folder and outputs -- and a client with no worker to
reach, or a worker of another environment, runs the job itself."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from helpers import REPO
from kcircuits import worker

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker is Linux-only")
LIGHT = ("pandas", "kcircuits.cli")  # what the test worker imports: enough for the data stages


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A worker started as a Snakefile's onstart starts it; yields its log, stopped afterwards."""
    monkeypatch.delenv(worker.ENV, raising=False)
    log = tmp_path / "worker.log"
    proc = worker.start({"PYTHONPATH": str(REPO / "workflow")}, str(log), LIGHT)
    path = os.environ[worker.ENV]
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the worker did not start listening within 60 s"
        time.sleep(0.05)
    yield log
    worker.stop(proc)
    assert worker.ENV not in os.environ and not os.path.exists(path)


def kcircuits(*argv, cwd, env=None) -> subprocess.CompletedProcess:
    """`python -m kcircuits argv` as a job's shell runs it, stdout and stderr to separate files."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow"), **(env or {})}
    with open(cwd / "out.txt", "w") as out, open(cwd / "err.txt", "w") as err:
        proc = subprocess.run([sys.executable, "-m", "kcircuits", *argv], stdout=out, stderr=err, cwd=cwd,
                              env=env)
    proc.stdout, proc.stderr = (cwd / "out.txt").read_text(), (cwd / "err.txt").read_text()
    return proc


def companies(folder):
    folder.mkdir()
    argv = ("companies", "--settings", '{"seed": 0}', "--pools", str(REPO / "resources" / "pools"),
            "--out", "companies.parquet")  # relative: the job's own folder
    return kcircuits(*argv, cwd=folder), (folder / "companies.parquet")


def companies_fresh(folder):
    os.environ[worker.ENV], path = worker.OFF, os.environ[worker.ENV]
    try:
        return companies(folder)
    finally:
        os.environ[worker.ENV] = path


def test_job_in_the_worker_equals_a_fresh_interpreter(server, tmp_path):
    forked, forked_out = companies(tmp_path / "forked")
    fresh, fresh_out = companies_fresh(tmp_path / "fresh")
    assert forked.returncode == fresh.returncode == 0, forked.stderr
    assert "kcircuits companies" in server.read_text()  # it ran in the worker
    assert forked_out.read_bytes() == fresh_out.read_bytes()


def test_streams_and_exit_status_are_the_jobs(server, tmp_path):
    helped = kcircuits("--help", cwd=tmp_path)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: kcircuits") and not helped.stderr
    bad = kcircuits("no-such-stage", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'no-such-stage'" in bad.stderr and not bad.stdout
    wrong = kcircuits("entities", "--settings", "{not json", "--pools", "x", "--out", "y", "--report", "z",
                      cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.startswith("kcircuits: ")
    assert server.read_text().count("job ") == 3


def test_environment_is_the_jobs(server, tmp_path):
    """The job sees the client's environment, not the worker's: help wraps at the job's COLUMNS."""
    narrow, wide = ({"COLUMNS": str(width)} for width in (40, 200))
    forked = kcircuits("--help", cwd=tmp_path, env=narrow).stdout
    assert forked == kcircuits("--help", cwd=tmp_path, env={**narrow, worker.ENV: worker.OFF}).stdout
    assert forked != kcircuits("--help", cwd=tmp_path, env=wide).stdout
    assert server.read_text().count("job ") == 2


def test_another_environment_is_refused_and_runs_here(server, monkeypatch):
    monkeypatch.setattr(worker, "identity", lambda: {"prefix": "/elsewhere"})
    assert worker.run_job(["--help"]) is None
    assert "job " not in server.read_text()


def test_no_worker_to_reach_runs_here(tmp_path, monkeypatch):
    monkeypatch.setenv(worker.ENV, str(tmp_path / "no-socket"))
    assert worker.run_job(["--help"]) is None
    monkeypatch.setenv(worker.ENV, worker.OFF)
    assert worker.run_job(["--help"]) is None
    assert worker.start({}, str(tmp_path / "log")) is None  # off: no worker started
    proc = kcircuits("--help", cwd=tmp_path, env={worker.ENV: str(tmp_path / "no-socket")})
    assert proc.returncode == 0 and proc.stdout.startswith("usage: kcircuits")


def test_a_worker_whose_run_is_gone_exits_and_removes_its_socket(tmp_path):
    """A run killed before it could stop its worker (SIGKILL: no onerror) leaves no worker and no socket."""
    folder = tmp_path / "kcircuits-worker"
    folder.mkdir()
    path = folder / "socket"
    run = f"{sys.executable} -m kcircuits.worker {path} $$ json & while [ ! -S {path} ]; do sleep 0.05; done"
    subprocess.run(["sh", "-c", run], env={**os.environ, "PYTHONPATH": str(REPO / "workflow")}, check=True,
                   timeout=60)  # the 'run' (this shell) ends once its worker listens
    deadline = time.monotonic() + 30
    while folder.exists():
        assert time.monotonic() < deadline, "the worker outlived its run by 30 s"
        time.sleep(0.1)
