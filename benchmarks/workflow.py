"""The whole workflow's time: wall time, job-seconds by rule, and how much of it is interpreter start-up.

Runs a config's whole DAG (the embedded default unless --configfile) from an empty working folder,
so that every job runs, and reads Snakemake's own log: each job's start ("[date]" then "rule X:" with
its jobid) and end ("[date]" then "Finished jobid: N"), to the second. Job-seconds are summed by rule.

Start-up: every `python -m kcircuits` job first imports the libraries its stage needs. Its cost is
estimated per kind of job (the minimum of --repeats runs, on the same machine, after the workflow),
times the number of such jobs, as a share of all job-seconds. Without the run's worker
(KCIRCUITS_WORKER=off, or --no-worker for the log of such a run): a fresh interpreter importing what a
stage that runs a model imports (torch, transformers with a model family, pandas, pyarrow, the CLI;
such a job takes --threads) or what the others import (pandas, pyarrow, matplotlib, seaborn, the
CLI). With it (kcircuits.worker, on by default): a `python -m kcircuits --help` round trip through a
worker that has imported PRELOAD, which holds all of those, so a job has nothing heavy left to import.
Write the JSON with --out; compare two commits by running this once for each on one machine.

    python benchmarks/workflow.py --cores 2 --out /tmp/workflow.json                 # the default
    python benchmarks/workflow.py --configfile tests/config/smoke.yaml --cores 2      # the smoke world
    python benchmarks/workflow.py --log results/default/.../snakemake.log            # an earlier run's log
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
START = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")
PYTHON_JOB = "python -m kcircuits"
IMPORTS = {  # what a fresh interpreter imports before a stage works: one that runs a model (--threads), or not
    "model": ("torch", "transformers", "transformers.models.gpt2.modeling_gpt2", "pandas", "pyarrow", "kcircuits.cli"),
    "light": ("pandas", "pyarrow", "matplotlib.pyplot", "seaborn", "kcircuits.cli"),
}


def job_times(log: str) -> dict[int, dict]:
    """jobid -> {rule, start, end (datetimes), python: None (no kcircuits stage), "model" (a stage that
    runs a model: it takes --threads) or "light"} of a Snakemake log; jobs without a start or an end
    (e.g. rule all, which runs nothing) are left out."""
    jobs: dict[int, dict] = {}
    stamp = rule = job = None
    for line in log.splitlines():
        if match := STAMP.match(line):
            stamp = datetime.strptime(" ".join(match[1].split()), "%a %b %d %H:%M:%S %Y")
        elif match := START.match(line):
            rule, job = match[1], None
        elif (match := JOBID.match(line)) and rule:
            job = int(match[1])
            jobs[job] = {"rule": rule, "start": stamp, "end": None, "python": None}
        elif line.startswith("Shell command:") and job in jobs and PYTHON_JOB in line:
            jobs[job]["python"] = "model" if " --threads " in line else "light"
        elif (match := FINISHED.match(line)) and int(match[1]) in jobs:
            jobs[int(match[1])]["end"] = stamp
    return {j: t for j, t in jobs.items() if t["start"] and t["end"]}


def by_rule(jobs: dict[int, dict]) -> dict[str, dict]:
    """rule -> {jobs, seconds}, the rules with the most job-seconds first."""
    out: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "seconds": 0.0})
    for job in jobs.values():
        out[job["rule"]]["jobs"] += 1
        out[job["rule"]]["seconds"] += (job["end"] - job["start"]).total_seconds()
    return dict(sorted(out.items(), key=lambda item: -item[1]["seconds"]))


def startup_seconds(repeats: int, worker: bool) -> dict[str, float]:
    """Job kind -> the least time of `repeats` start-ups, as the run's jobs start (with or without its
    worker)."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO / "workflow")}
    if not worker:
        return {kind: min(timed([sys.executable, "-c", "; ".join(f"import {name}" for name in names)], env)
                          for _ in range(repeats)) for kind, names in IMPORTS.items()}
    sys.path.insert(0, env["PYTHONPATH"])
    from kcircuits import worker as server

    assert set().union(*IMPORTS.values()) <= set(server.PRELOAD), "the worker must import what stages import"
    with tempfile.TemporaryDirectory() as folder:
        proc = server.start({"PYTHONPATH": env["PYTHONPATH"]}, f"{folder}/worker.log")
        env[server.ENV] = os.environ[server.ENV]
        while not os.path.exists(env[server.ENV]):
            time.sleep(0.1)
        try:
            best = min(timed([sys.executable, "-m", "kcircuits", "--help"], env) for _ in range(repeats))
        finally:
            server.stop(proc)
        assert "job " in Path(f"{folder}/worker.log").read_text(), "the jobs did not run in the worker"
    return dict.fromkeys(IMPORTS, best)


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def summary(log: str, wall: float | None, startup: dict[str, float] | None) -> dict:
    jobs = job_times(log)
    rules = by_rule(jobs)
    total = sum(r["seconds"] for r in rules.values())
    counts = {kind: sum(j["python"] == kind for j in jobs.values()) for kind in IMPORTS}
    out = {"wall_seconds": wall, "jobs": len(jobs), "job_seconds": total, "python_jobs": counts, "rules": rules}
    if startup is not None:
        seconds = sum(startup[kind] * n for kind, n in counts.items())
        out |= {"startup_seconds_per_job": {kind: round(t, 3) for kind, t in startup.items()},
                "startup_seconds": round(seconds, 1), "startup_share": round(seconds / total, 3) if total else None}
    return out


def run_workflow(cores: int, configfiles: list[str], worker: bool) -> tuple[str, float]:
    """(Snakemake's log, wall seconds) of the whole DAG in a fresh working folder."""
    with tempfile.TemporaryDirectory(prefix="kcircuits-bench-") as work:
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", work,
               "--cores", str(cores)]
        if configfiles:
            cmd += ["--configfile", *configfiles]
        start = time.perf_counter()
        env = {**os.environ, **({} if worker else {"KCIRCUITS_WORKER": "off"})}
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
        wall = time.perf_counter() - start
        if proc.returncode:
            sys.exit(f"snakemake failed:\n{proc.stderr[-3000:]}")
        return proc.stdout + proc.stderr, wall



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="config files merged over config.yaml")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--log", type=Path, help="read this Snakemake log instead of running the workflow")
    parser.add_argument("--repeats", type=int, default=3, help="start-up: fresh interpreters timed")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    parser.add_argument("--no-worker", action="store_true",
                        help="run (or read the log of a run) with KCIRCUITS_WORKER=off: a fresh interpreter per job")
    args = parser.parse_args(argv)
    if args.log:
        log, wall = args.log.read_text(encoding="utf-8"), None
    else:
        log, wall = run_workflow(args.cores, args.configfile, not args.no_worker)
    startup = startup_seconds(args.repeats, not args.no_worker) if args.repeats else None
    result = summary(log, wall, startup) | {"worker": not args.no_worker}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
