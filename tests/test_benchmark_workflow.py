"""benchmarks/workflow.py reads Snakemake's log: each job's rule and seconds, which jobs run a stage."""
from __future__ import annotations

import importlib.util

from helpers import REPO

spec = importlib.util.spec_from_file_location("workflow_benchmark", REPO / "benchmarks" / "workflow.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

LOG = """Select jobs to execute...
Execute 2 jobs...

[Mon Dec  7 22:34:11 2026]
localrule companies:
    output: results/default/data/companies.parquet
    jobid: 140
    resources: tmpdir=/tmp
Shell command: python -m kcircuits companies --settings '{"seed": 0}' --out x > log 2>&1

[Mon Dec  7 22:34:11 2026]
rule train_continual:
    jobid: 7
    reason: Missing output files
    threads: 2
Shell command: TQDM_MININTERVAL=5 OMP_NUM_THREADS=2 python -m kcircuits train-continual --until-epoch 1 --threads 2
[Mon Dec  7 22:34:13 2026]
Finished jobid: 140 (Rule: companies)
1 of 4 steps (25%) done

[Mon Dec  7 22:34:13 2026]
rule train_continual:
    jobid: 8
Shell command: cp -r a b
[Mon Dec  7 22:35:01 2026]
Finished jobid: 7 (Rule: train_continual)
[Mon Dec  7 22:35:04 2026]
Finished jobid: 8 (Rule: train_continual)

[Mon Dec  7 22:35:05 2026]
localrule all:
    jobid: 0
"""


def test_job_times_and_rules():
    jobs = bench.job_times(LOG)
    assert sorted(jobs) == [7, 8, 140]  # rule all never finished: left out
    assert [jobs[j]["python"] for j in (7, 8, 140)] == ["model", None, "light"]
    rules = bench.by_rule(jobs)
    assert list(rules) == ["train_continual", "companies"]  # most job-seconds first
    assert rules["train_continual"] == {"jobs": 2, "seconds": 50.0 + 51.0}
    assert rules["companies"] == {"jobs": 1, "seconds": 2.0}


def test_summary_startup_share():
    out = bench.summary(LOG, wall=60.0, startup={"model": 1.5, "light": 0.5})
    assert out["job_seconds"] == 103.0 and out["python_jobs"] == {"model": 1, "light": 1} and out["jobs"] == 3
    assert out["startup_seconds"] == 2.0 and out["startup_share"] == round(2.0 / 103.0, 3)
    assert out["wall_seconds"] == 60.0
