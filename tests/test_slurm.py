"""The workflow through a real SLURM: a single-node cluster started from Debian packages on this
machine (scripts/local-slurm.sh), the smoke config run with `--profile profiles/slurm`, and the
outputs compared with a local run of the same targets.

Needs root (daemons, apt-get when the packages are missing) and the snakemake SLURM plugin; skipped
with the reason otherwise, or with KC_SLURM_TEST=0. Every step is bounded by a timeout, and the
daemons are stopped at the end unless they were already running before the test.

Subset of the smoke world, to keep the test a few minutes, in two runs as a user would go: first
the data and training (data, base training, one continual epoch), then the per-checkpoint fan-out
(evaluation and circuit scores of the two checkpoints). Groups cut the per-job overhead (a cold sbatch
job costs seconds of queue and polling): the data stages + continual corpus run as one job; base
training and the continual epoch as one job each; the checkpoint exports (local rules) on the
submitting side. The fan-out goes out as SLURM job arrays (--slurm-array-jobs): one sbatch call per
rule, one array task per checkpoint. The plugin bundles only jobs of a rule that are ready together;
in one run from scratch they would not be (each checkpoint's jobs become ready when it is exported).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, SMOKE, assert_same_results, snakemake_command

SCRIPT = REPO / "scripts" / "local-slurm.sh"
CONFIGS = [SMOKE, REPO / "tests" / "config" / "slurm.yaml"]
TRAIN_TARGETS = ["results/smoke/data/circuit_pairs.parquet", "results/smoke/data/qa_report.json",
                 "results/smoke/seed-0/checkpoints/epoch-000", "results/smoke/seed-0/checkpoints/epoch-001"]
FANOUT_TARGETS = [f"results/smoke/seed-0/{kind}/{ckpt}{ext}" for ckpt in ("epoch-000", "epoch-001")
                  for kind, ext in (("eval", ".parquet"), ("circuits", "/scores.json"))]
ARRAY_RULES = ("evaluate", "circuit_scores")
# Training jobs stay separate (as at paper scale): Snakemake sizes a group from its members' levels
# and, after the continual_corpus checkpoint re-evaluates the DAG, summed base + epoch (4 CPUs, 2 GPUs).
GROUPS = [f"{rule}=data" for rule in ("entities", "biographies", "probes", "qa", "tokenizer", "circuit_pairs",
                                      "continual_corpus")]
RUN_TIMEOUT = 600  # s; a run whose status polling hangs (no accounting) is killed, not waited on
TIMINGS: dict[str, float] = {}


def _skip_reason() -> str | None:
    if os.environ.get("KC_SLURM_TEST", "1") == "0":
        return "KC_SLURM_TEST=0"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root on Linux to start SLURM daemons"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and apt-get is not available to install it"
    return None


pytestmark = [pytest.mark.slurm, pytest.mark.slow,
              pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


def _daemons_running() -> bool:
    out = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60).stdout
    return "slurmctld: running" in out and "slurmd: running" in out


@pytest.fixture(scope="module")
def local_slurm():
    """A running single-node cluster with one fake GPU; stopped afterwards if this test started it."""
    was_running = _daemons_running()
    env = {**os.environ, "LOCAL_SLURM_FAKE_GPUS": "1"}
    start = time.monotonic()
    try:
        proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=600, env=env)
        TIMINGS["cluster_start_s"] = time.monotonic() - start
        if proc.returncode != 0 and "apt-get install failed" in proc.stdout:
            pytest.skip("SLURM packages could not be installed (apt-get failed; no Debian mirror reachable?)")
        if proc.returncode != 0:
            pytest.fail(f"local SLURM did not start:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        print(proc.stdout)
        yield
    finally:
        if not was_running:
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)
        print("SLURM test timings (s):", json.dumps({k: round(v, 1) for k, v in TIMINGS.items()}))


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = snakemake_command(workdir, *args, configfiles=CONFIGS, cores=None)  # cores: from the profile or args
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=RUN_TIMEOUT,
                              start_new_session=True)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"snakemake did not finish in {RUN_TIMEOUT} s (status polling hang?):\n{str(err.stdout)[-3000:]}")
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _submitted(log: str) -> dict[str, str]:
    """SLURM job id -> what it ran (the plugin's log folder: rule_evaluate/0_epoch-000, group_train_...)."""
    found = re.findall(r"submitted with SLURM jobid (\d+) \(log: .*?/slurm_logs/(.+)/\d+\.log\)", log)
    return dict(found)


def _arrays(log: str) -> dict[str, tuple[str, list[int]]]:
    """Rule -> (SLURM array job id, its array tasks) of every array submission, the rule found from the
    Snakemake job ids the plugin names (`jobid: N` of each job Snakemake printed)."""
    rule_of = {int(jobid): rule for rule, jobid in
               re.findall(r"^rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", log, re.MULTILINE)}
    arrays = {}
    for ids, job_id, first, last in re.findall(r"Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID "
                                               r"(\d+)\. The individual task IDs are (\d+)-(\d+)\.", log):
        (rule,) = {rule_of[int(i)] for i in ids.split(",")}  # one rule per array
        assert rule not in arrays, (rule, ids)
        arrays[rule] = (job_id, list(range(int(first), int(last) + 1)))
    return arrays


def _sacct(job_ids) -> dict[str, dict]:
    """Accounting of jobs (array jobs: one row per task, <id>_<task>)."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,AllocCPUS,AllocTRES"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {r[0]: {"state": r[1], "cpus": r[2], "tres": r[3]} for r in rows}


def test_smoke_subset_through_slurm_with_job_arrays_equals_a_local_run(local_slurm, tmp_path):
    profile = ["--profile", str(REPO / "profiles" / "slurm"), "--slurm-init-seconds-before-status-checks", "2"]
    t0 = time.monotonic()
    train = _snakemake(tmp_path / "slurm", *TRAIN_TARGETS, *profile, "--groups", *GROUPS)
    TIMINGS["slurm_train_run_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    fanout = _snakemake(tmp_path / "slurm", *FANOUT_TARGETS, *profile, "--slurm-array-jobs", ",".join(ARRAY_RULES))
    TIMINGS["slurm_fanout_run_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    _snakemake(tmp_path / "local", *TRAIN_TARGETS, *FANOUT_TARGETS, "--cores", "2")
    TIMINGS["local_run_s"] = time.monotonic() - t0

    # Data and training: every job completed; the training jobs got their 2 CPUs and the (fake) GPU
    # they asked for (compute.train.gpu: 1 -> sbatch --gpus=1); local rules (checkpoint exports)
    # never reached SLURM.
    train_log = train.stdout + train.stderr
    submitted = _submitted(train_log)
    names = sorted(submitted.values())
    assert len(names) == 3 and names[0].startswith("group_data_"), names
    assert names[1:] == ["rule_train_base/0", "rule_train_continual/0_epoch-001"], names
    accounting = _sacct(submitted)
    assert all(accounting[i]["state"] == "COMPLETED" for i in submitted), accounting
    for job_id, name in submitted.items():
        if name.startswith("rule_train"):
            assert accounting[job_id]["cpus"] == "2" and "gres/gpu=1" in accounting[job_id]["tres"], (name, accounting)
        else:
            assert "gpu" not in accounting[job_id]["tres"], (name, accounting)
    assert re.search(r"^localrule export_start_checkpoint:", train_log, re.MULTILINE)

    # The fan-out: one array job per rule, one task per checkpoint (<id>_1, <id>_2), nothing else
    # submitted; every task completed on the CPU it asked for.
    fanout_log = fanout.stdout + fanout.stderr
    arrays = _arrays(fanout_log)
    assert sorted(arrays) == sorted(ARRAY_RULES) and not _submitted(fanout_log), fanout_log[-3000:]
    assert all(tasks == [1, 2] for _, tasks in arrays.values()), arrays
    accounting = _sacct(job_id for job_id, _ in arrays.values())
    assert sorted(accounting) == sorted(f"{job_id}_{t}" for job_id, tasks in arrays.values() for t in tasks), accounting
    assert all(row["state"] == "COMPLETED" and row["cpus"] == "1" and "gpu" not in row["tres"]
               for row in accounting.values()), accounting

    # Same files, same bytes (training records: same content but wall-clock timings).
    compared = assert_same_results(tmp_path / "local" / "results", tmp_path / "slurm" / "results")
    assert {f"smoke/seed-0/{t}" for t in ("eval/epoch-001.parquet", "circuits/epoch-001/scores.safetensors")} \
        <= set(compared)
