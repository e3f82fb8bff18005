"""The whole workflow's time: wall time, job-seconds by rule, and how much of it is interpreter start-up.

Runs a config's whole DAG (the embedded default unless --configfile) from an empty working folder,
so that every job runs, and reads Snakemake's own log: each job's start ("[date]" then "rule X:" with
its jobid) and end ("[date]" then "Finished jobid: N"), to the second. Job-seconds are summed by rule.

Start-up: every `python -m kcircuits` job first imports the libraries a stage needs. Its cost is
estimated as the time a fresh interpreter takes to import torch, transformers, pandas and pyarrow and
the CLI (the minimum of --repeats runs, on the same machine, after the workflow), times the number of
such jobs, as a share of all job-seconds. Write the JSON with --out; compare two commits by running
this once for each on one machine.

    python benchmarks/workflow.py --cores 2 --out /tmp/workflow.json                 # the default
    python benchmarks/workflow.py --configfile tests/config/smoke.yaml --cores 2      # the smoke world
    python benchmarks/workflow.py --log results/default/.../snakemake.log            # an earlier run's log
"""
from __future__ import annotations

import argparse
import json
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
IMPORTS = "import torch, transformers, pandas, pyarrow; import kcircuits.cli"


def job_times(log: str) -> dict[int, dict]:
    """jobid -> {rule, start, end (datetimes), python (whether it runs a kcircuits stage)} of a
    Snakemake log; jobs without a start or an end (e.g. rule all, which runs nothing) are left out."""
    jobs: dict[int, dict] = {}
    stamp = rule = job = None
    for line in log.splitlines():
        if match := STAMP.match(line):
            stamp = datetime.strptime(" ".join(match[1].split()), "%a %b %d %H:%M:%S %Y")
        elif match := START.match(line):
            rule, job = match[1], None
        elif (match := JOBID.match(line)) and rule:
            job = int(match[1])
            jobs[job] = {"rule": rule, "start": stamp, "end": None, "python": False}
        elif line.startswith("Shell command:") and job in jobs:
            jobs[job]["python"] = PYTHON_JOB in line
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


def startup_seconds(repeats: int) -> float:
    """The least time of `repeats` fresh interpreters importing what a model-running stage imports."""
    env_code = "import os; os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE'); " + IMPORTS
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", env_code], check=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return min(times)


def summary(log: str, wall: float | None, startup: float | None) -> dict:
    jobs = job_times(log)
    rules = by_rule(jobs)
    total = sum(r["seconds"] for r in rules.values())
    n_python = sum(j["python"] for j in jobs.values())
    out = {"wall_seconds": wall, "jobs": len(jobs), "job_seconds": total, "python_jobs": n_python, "rules": rules}
    if startup is not None:
        out |= {"startup_seconds_per_job": round(startup, 3),
                "startup_share": round(startup * n_python / total, 3) if total else None}
    return out


def run_workflow(cores: int, configfiles: list[str]) -> tuple[str, float]:
    """(Snakemake's log, wall seconds) of the whole DAG in a fresh working folder."""
    with tempfile.TemporaryDirectory(prefix="kcircuits-bench-") as work:
        cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", work,
               "--cores", str(cores)]
        if configfiles:
            cmd += ["--configfile", *configfiles]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
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
    args = parser.parse_args(argv)
    if args.log:
        log, wall = args.log.read_text(encoding="utf-8"), None
    else:
        log, wall = run_workflow(args.cores, args.configfile)
    result = summary(log, wall, startup_seconds(args.repeats) if args.repeats else None)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
