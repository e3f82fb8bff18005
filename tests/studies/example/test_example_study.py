"""Adding a study is creating its folder: the example study (study/ beside this file) is copied into
workflow/kcircuits/studies/example/ of a copy of the repository -- no core file edited -- and the
registry, the config, the CLI, the figure table, findings and the workflow take it up."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import REPO, TINY, planned_jobs

HERE = Path(__file__).resolve().parent
IGNORE = shutil.ignore_patterns(".git", ".venv", "results", ".snakemake", "__pycache__", "*.egg-info", ".pytest_cache")


@pytest.fixture(scope="module")
def repo_with_example(tmp_path_factory) -> Path:
    """A copy of the repository with the example study's folder added, and nothing else changed."""
    root = tmp_path_factory.mktemp("repo") / "kcircuits"
    shutil.copytree(REPO, root, ignore=IGNORE)
    shutil.copytree(HERE / "study", root / "workflow" / "kcircuits" / "studies" / "example", ignore=IGNORE)
    return root


def python(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """python ARGS with the copy's package first on the path."""
    env = {**os.environ, "PYTHONPATH": str(root / "workflow"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=root, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stdout[-3000:] + proc.stderr[-3000:])
    return proc


def test_only_the_study_folder_was_added(repo_with_example):
    copied = [p.relative_to(repo_with_example) for p in repo_with_example.rglob("*") if p.is_file()]
    added = {str(p) for p in copied if not (REPO / p).is_file()}
    assert all((REPO / p).read_bytes() == (repo_with_example / p).read_bytes() for p in copied if str(p) not in added)
    assert added == {f"workflow/kcircuits/studies/example/{p.relative_to(HERE / 'study')}"
                     for p in (HERE / "study").rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_the_registry_config_and_cli_take_it_up(repo_with_example):
    code = """
import json, sys
from kcircuits.studies import STUDIES
from kcircuits.config import ConfigError, load_config, stage_settings, validate_config, load_schema
from kcircuits.figures.stage import all_figures
cfg = validate_config(load_config(["config.yaml"]))
try:
    validate_config({**cfg, "example": {"enabled": True, "metric": "accuracy"}})
    bad = None
except ConfigError as err:
    bad = str(err)
print(json.dumps({"studies": list(STUDIES), "example": cfg["example"], "bad": bad,
                  "settings": sorted(stage_settings(cfg, "example")), "figure": all_figures()["example_final"].stage,
                  "schema": "example" in load_schema()["required"]}))
"""
    out = json.loads(python(repo_with_example, "-c", code).stdout)
    assert out["studies"][-1] == "example" and "example" not in json.loads(
        python(REPO, "-c",
               "import json; from kcircuits.studies import STUDIES; print(json.dumps(list(STUDIES)))").stdout)
    assert out["example"] == {"enabled": True, "metric": "query_top1"} and out["schema"]
    assert out["bad"].startswith("example.metric: 'accuracy'")
    assert out["settings"] == ["example", "seed"] and out["figure"] == "example"
    assert "summary" in python(repo_with_example, "-m", "kcircuits", "example", "--help").stdout
    bad_key = python(repo_with_example, "-m", "kcircuits", "example", "summary", "--config", "config.yaml",
                     str(HERE / "bad.yaml"), "--eval", "x", "--out-table", "t", "--out-json", "j", check=False)
    assert bad_key.returncode == 2 and "example: unknown key(s) 'colour'" in bad_key.stderr


def test_its_command_figure_and_findings_section_run(repo_with_example, tmp_path):
    rows = [{"seed": seed, "order": order, "checkpoint": f"epoch-00{order}", "epoch": float(order), "metric": metric,
             "target": "current", "type": kind, "freq_group": "all", "attribute": attr, "value": value}
            for seed in (0, 1) for order in (0, 1) for metric in ("query_top1", "mc_accuracy")
            for kind in ("new", "revised") for attr, value in (("all", 0.5), ("city", 0.2 * order + 0.1 * seed))]
    pd.DataFrame(rows).to_parquet(tmp_path / "eval.parquet")
    settings = json.dumps({"seed": 0, "example": {"enabled": True, "metric": "query_top1"}})
    out = {name: tmp_path / name for name in ("final.parquet", "summary.json", "f.pdf", "f.png")}
    python(repo_with_example, "-m", "kcircuits", "example", "summary", "--settings", settings,
           "--eval", str(tmp_path / "eval.parquet"), "--out-table", str(out["final.parquet"]),
           "--out-json", str(out["summary.json"]))
    table = pd.read_parquet(out["final.parquet"]).set_index(["type", "attribute"])
    assert table.loc[("new", "city"), "value"] == pytest.approx(0.25)  # last checkpoint: 0.2 and 0.3
    assert table["n_seeds"].eq(2).all() and len(table) == 4
    python(repo_with_example, "-m", "kcircuits", "figure", "example_final", "--settings", settings,
           "--table", str(out["final.parquet"]), "--entities", str(tmp_path / "eval.parquet"),
           "--pdf", str(out["f.pdf"]), "--png", str(out["f.png"]))
    assert out["f.png"].stat().st_size > 1000
    code = ("import json, sys; from kcircuits.analysis.report_stage import study_findings; "
            "study, spec = study_findings()['example']; "
            "print(chr(10).join(study.function(spec)(json.load(open(sys.argv[1])))))")
    md = python(repo_with_example, "-c", code, str(out["summary.json"])).stdout
    assert md.startswith("## Example: final recall") and "new: 0.500" in md


@pytest.mark.slow
def test_the_dry_run_plans_it(repo_with_example):
    proc = python(repo_with_example, "-m", "snakemake", "-n", "--nolock", "--cores", "1", "--configfile", str(TINY))
    jobs = planned_jobs(proc)
    assert jobs["example_summary"] == 1 and jobs["figure_example_final"] == 1
    findings = proc.stdout[proc.stdout.index("rule findings:"):]
    assert "results/tiny/analysis/example/summary.json" in findings.split("output:")[0]
