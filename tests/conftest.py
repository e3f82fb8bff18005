"""Shared fixtures: real Snakemake runs of the tiny test config in temporary folders."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"
TINY_DATA_TARGETS = ("results/tiny/data/circuit_pairs.parquet", "results/tiny/data/qa_report.json")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def snakemake(workdir: Path, *args: str, configfiles=(TINY,), check: bool = True,
              cores: int | None = 2) -> subprocess.CompletedProcess:
    """Run the project's Snakefile in `workdir` (outputs land there); returns the finished process.
    cores=None: no --cores, as users type `snakemake --report` or `snakemake -n`."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           *(["--cores", str(cores)] if cores else []), "--nolock", *args]
    if configfiles:  # last: --configfile takes every following word as a file
        cmd += ["--configfile", *map(str, configfiles)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The data folder of a complete tiny run (all data stages, real Snakemake)."""
    work = tmp_path_factory.mktemp("tiny")
    snakemake(work, *TINY_DATA_TARGETS)
    return work / "results" / "tiny" / "data"
