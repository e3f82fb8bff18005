"""Crash recovery as a user meets it: a local run of the smoke world (shortened) killed with SIGKILL
during continual training -- the whole process group, Snakemake and its running job, as a power
loss or an out-of-memory kill of the session would -- then rerun by hand. The rerun stops on
Snakemake's lock; `snakemake --unlock` and a rerun finish the work, the killed training job resuming
from its last scratch save; and every result equals an uninterrupted run's (docs/cluster.md, "Recovering
from a crash")."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time

import pytest
import yaml

from helpers import REPO, SMOKE, assert_same_results, planned_jobs, snakemake, snakemake_command

pytestmark = pytest.mark.slow

# One base epoch and one continual epoch (48 steps on the smoke world), a resumable save every 10 steps.
SHORT = {"train": {"base": {"epochs": 1, "lr": 3.0e-3}, "continual": {"epochs": 1, "lr": 3.0e-3}, "save_steps": 10}}
TARGET = "results/smoke/seed-0/checkpoints/epoch-001"
STATE = "results/smoke/seed-0/train/continual/state/epoch-001"
SCRATCH = "results/smoke/seed-0/train/continual/scratch/epoch-001"
CORPUS = "results/smoke/seed-0/train/continual/corpus.json"
TRAIN_LOG = "results/smoke/logs/seed-0/train/continual/epoch-001.log"
LOCKED = ("Error: Directory cannot be locked.", "It can be removed with the --unlock argument.")


def _saved_steps(scratch) -> list[int]:
    return sorted(int(p.parent.name.split("-")[1]) for p in scratch.glob("checkpoint-*/trainer_state.json"))


def test_a_run_killed_during_training_unlocks_reruns_and_equals_an_uninterrupted_run(tmp_path):
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump(SHORT))
    configs = (SMOKE, short)
    crashed = tmp_path / "crashed"
    scratch = crashed / SCRATCH

    # Run as users do (with the lock) and kill everything once continual training has saved once.
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(snakemake_command(crashed, TARGET, configfiles=configs, lock=True), cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not _saved_steps(scratch):
                assert proc.poll() is None, "the run ended before continual training saved"
                assert time.monotonic() < deadline, "no save of continual training within 300 s"
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: Snakemake and every job it started
            proc.wait()
    saved = _saved_steps(scratch)[0]
    assert not (crashed / STATE).exists() and not (crashed / TARGET).exists()  # killed mid-epoch

    # A plain rerun stops on the lock the killed run left, saying what to do.
    locked = snakemake(crashed, TARGET, configfiles=configs, lock=True, check=False)
    assert locked.returncode != 0
    assert all(line in locked.stdout + locked.stderr for line in LOCKED), locked.stderr[-2000:]
    unlock = snakemake(crashed, "--unlock", TARGET, configfiles=configs, lock=True)
    assert "Unlocked working directory." in unlock.stdout + unlock.stderr

    # The rerun runs only the killed job and what follows it; training resumes from its scratch save.
    rerun = snakemake(crashed, TARGET, configfiles=configs, lock=True)
    assert planned_jobs(rerun) == {"train_continual": 1, "export_checkpoint": 1}
    resumed = re.search(r"resuming this job from its scratch checkpoint \S*checkpoint-(\d+)",
                        (crashed / TRAIN_LOG).read_text())
    steps = json.loads((crashed / CORPUS).read_text())["steps_per_epoch"]
    assert resumed and saved <= int(resumed.group(1)) < steps, (saved, resumed)
    assert not scratch.exists()  # dropped once the state is published

    # Every result (data, models, states, the checkpoint) as an uninterrupted run's.
    reference = tmp_path / "uninterrupted"
    snakemake(reference, TARGET, configfiles=configs)
    compared = assert_same_results(reference / "results", crashed / "results")
    assert f"{TARGET}/model.safetensors".removeprefix("results/") in compared
    assert f"{STATE}/optimizer.pt".removeprefix("results/") in compared
