"""The workflow through a real SLURM: a single-node cluster started from Debian packages on this
machine (scripts/local-slurm.sh), the smoke config run with `--profile profiles/slurm`, and the
outputs compared with a local run of the same targets.

Needs root (daemons, apt-get when the packages are missing) and the snakemake SLURM plugin; skipped
with the reason otherwise, or with KC_SLURM_TEST=0. Every step is bounded by a timeout, and the
daemons are stopped at the end unless they were already running before the test.

Subset of the smoke world, to keep the test a few minutes: data, base training, one continual
epoch and the evaluation of two checkpoints. Groups cut the per-job overhead (a cold sbatch job
costs seconds of queue and polling): the data stages + continual corpus run as one job; base
training, the continual epoch and the two evaluations (concurrently) as one job each; the checkpoint
exports (local rules) on the submitting side.
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

from helpers import REPO, SMOKE

SCRIPT = REPO / "scripts" / "local-slurm.sh"
CONFIGS = [SMOKE, REPO / "tests" / "config" / "slurm.yaml"]
TARGETS = ["results/smoke/seed-0/eval/epoch-000.parquet", "results/smoke/seed-0/eval/epoch-001.parquet"]
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
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--nolock", *TARGETS, *args, "--configfile", *map(str, CONFIGS)]  # options with many values last
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=RUN_TIMEOUT,
                              start_new_session=True)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"snakemake did not finish in {RUN_TIMEOUT} s (status polling hang?):\n{str(err.stdout)[-3000:]}")
    assert proc.returncode == 0, f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _outputs(root: Path) -> dict[str, Path]:
    """Every result file but logs, benchmarks and Snakemake's markers, by relative path."""
    skip = {"logs", "benchmarks"}
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and not skip & set(p.relative_to(root).parts) and p.name != ".snakemake_timestamp"}


def _without_timings(obj):
    """Training records minus wall-clock fields (train_runtime, *_per_second): the rest must agree."""
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if not re.search(r"runtime|per_second", k)}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _submitted(log: str) -> dict[str, str]:
    """SLURM job id -> what it ran (the plugin's log folder: rule_evaluate/0_epoch-000, group_train_...)."""
    found = re.findall(r"submitted with SLURM jobid (\d+) \(log: .*?/slurm_logs/(.+)/\d+\.log\)", log)
    return dict(found)


def _sacct(job_ids) -> dict[str, dict]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,AllocCPUS,AllocTRES"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {r[0]: {"state": r[1], "cpus": r[2], "tres": r[3]} for r in rows}


def test_smoke_subset_through_slurm_equals_a_local_run(local_slurm, tmp_path):
    t0 = time.monotonic()
    proc = _snakemake(tmp_path / "slurm", "--profile", str(REPO / "profiles" / "slurm"),
                      "--slurm-init-seconds-before-status-checks", "2", "--groups", *GROUPS)
    TIMINGS["slurm_run_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    _snakemake(tmp_path / "local", "--cores", "2")
    TIMINGS["local_run_s"] = time.monotonic() - t0

    # What SLURM ran: every job completed; the training job got its 2 CPUs and the (fake) GPU it asked
    # for (compute.train.gpu: 1 -> sbatch --gpus=1); local rules (checkpoint exports) never reached it.
    submitted = _submitted(proc.stdout + proc.stderr)
    names = sorted(submitted.values())
    assert len(names) == 5 and names[0].startswith("group_data_"), names
    assert names[1:] == ["rule_evaluate/0_epoch-000", "rule_evaluate/0_epoch-001", "rule_train_base/0",
                         "rule_train_continual/0_epoch-001"], names
    accounting = _sacct(submitted)
    assert all(accounting[i]["state"] == "COMPLETED" for i in submitted), accounting
    for job_id, name in submitted.items():
        expect = ("2", "gres/gpu=1") if name.startswith("rule_train") else (None, None)
        if expect[0]:
            assert accounting[job_id]["cpus"] == expect[0] and expect[1] in accounting[job_id]["tres"], (name, accounting)
        else:
            assert "gpu" not in accounting[job_id]["tres"], (name, accounting)
    assert re.search(r"^localrule export_start_checkpoint:", proc.stdout + proc.stderr, re.M)

    # Same files, same bytes (training records: same content but wall-clock timings).
    slurm_out, local_out = _outputs(tmp_path / "slurm" / "results"), _outputs(tmp_path / "local" / "results")
    assert set(slurm_out) == set(local_out)
    assert any(k.endswith("eval/epoch-001.parquet") for k in slurm_out)
    for rel, path in local_out.items():
        if path.name in ("training.json", "trainer_state.json"):
            a, b = (json.loads(p.read_text()) for p in (path, slurm_out[rel]))
            assert _without_timings(a) == _without_timings(b), rel
        else:
            assert path.read_bytes() == slurm_out[rel].read_bytes(), rel
