"""The DAG as users meet it: dry runs, single targets, reruns, determinism, atomic outputs."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from helpers import REPO, TINY, planned_jobs, snakemake
from helpers import TINY_DATA_TARGETS as DATA_TARGETS
from kcircuits.io import atomic_path, read_safetensors_header

DATA_RULES = {"entities", "biographies", "probes", "qa", "tokenizer", "circuit_pairs"}


@pytest.mark.slow
def test_dry_run_lists_the_data_jobs(tmp_path):
    jobs = planned_jobs(snakemake(tmp_path, "-n", "--forceall", "--rerun-triggers", "mtime"))
    assert DATA_RULES <= set(jobs) and all(jobs[r] == 1 for r in DATA_RULES)
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize("target, needed", [
    ("results/tiny/data/entities.parquet", {"entities"}),
    ("results/tiny/data/probes.parquet", {"entities", "probes"}),
    ("results/tiny/data/tokenizer_report.json", {"entities", "biographies", "tokenizer"}),
])
def test_single_target_builds_only_what_it_needs(tmp_path, target, needed):
    assert set(planned_jobs(snakemake(tmp_path, "-n", target))) == needed


TRAINING = {"train_base", "continual_corpus", "train_continual", "export_start_checkpoint", "export_checkpoint"}


@pytest.mark.slow
@pytest.mark.parametrize("figure, needed", [
    ("topology_jaccard", {"entities", "biographies", "tokenizer", "probes", "circuit_pairs", *TRAINING,
                          "circuit_scores", "circuit_eval", "topology_tables", "figure_topology_jaccard"}),
    ("logit_lens", {"entities", "biographies", "tokenizer", "probes", "circuit_pairs", *TRAINING,
                    "circuit_scores", "circuit_eval", "components_measure", "components_summary", "figure_logit_lens"}),
])
def test_one_figure_plans_only_the_jobs_it_reads_from(tmp_path, figure, needed):
    """No evaluation, QA, transplant or other figure's jobs for a circuit figure."""
    jobs = planned_jobs(snakemake(tmp_path, "-n", f"results/tiny/figures/{figure}.pdf"))
    assert set(jobs) == needed


def digest_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


@pytest.mark.slow
def test_same_config_and_seed_give_identical_files(tiny_data, tmp_path):
    snakemake(tmp_path, *DATA_TARGETS)
    first, second = digest_tree(tiny_data), digest_tree(tmp_path / "results/tiny/data")
    assert len(first) >= 17 and first == second


@pytest.mark.slow
def test_changing_one_stage_reruns_only_that_stage_and_what_follows(tiny_data, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(tiny_data.parents[2], work, symlinks=True)  # keeps mtimes and .snakemake metadata
    override = tmp_path / "fewer_probes.yaml"
    override.write_text("probes:\n  n_per_group: 10\n")
    jobs = planned_jobs(snakemake(work, "-n", *DATA_TARGETS, configfiles=(TINY, override)))
    assert set(jobs) - {"all"} == {"probes", "qa", "circuit_pairs"}


@pytest.mark.slow
def test_nothing_to_do_after_a_complete_run(tiny_data, tmp_path):
    work = tmp_path / "copy"
    shutil.copytree(tiny_data.parents[2], work, symlinks=True)
    out = snakemake(work, "-n", *DATA_TARGETS)
    assert "Nothing to be done" in out.stdout + out.stderr


def test_atomic_path_leaves_no_partial_file(tmp_path):
    target = tmp_path / "table.txt"
    target.write_text("complete old result")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of a new res")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "complete old result"
    assert [p.name for p in tmp_path.iterdir()] == ["table.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new result")
    assert target.read_text() == "new result"


def test_safetensors_files_are_byte_identical_across_processes(tmp_path):
    """Score files of equal results are equal bytes whatever the process (its hash seed changes the
    order in which safetensors writes several metadata keys), and their header reads back."""
    import os
    import subprocess
    import sys

    code = ("import sys, torch; from kcircuits.io import write_safetensors; "
            "write_safetensors({'b': torch.arange(6.).view(2, 3), 'a': torch.ones(2)}, sys.argv[1], "
            "{k: {'n': i, 'names': [k] * i} for i, k in enumerate('zyxwvutsrq')})")
    files = [tmp_path / f"{seed}.safetensors" for seed in (1, 2, 3)]
    for seed, path in zip((1, 2, 3), files):
        subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(REPO / "workflow")})
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in files}) == 1
    header, names = read_safetensors_header(files[0])
    assert header["x"] == {"n": 2, "names": ["x", "x"]} and names == ["a", "b"]


@pytest.mark.slow
def test_stage_runs_by_hand_and_matches_the_rule(tiny_data, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "entities.parquet"
    subprocess.run([sys.executable, "-m", "kcircuits", "entities", "--config", str(REPO / "config.yaml"), str(TINY),
                    "--out", str(out), "--report", str(tmp_path / "report.json")], check=True, cwd=tmp_path)
    assert out.read_bytes() == (tiny_data / "entities.parquet").read_bytes()
