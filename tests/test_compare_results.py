"""scripts/compare_results.py: equal outputs pass, any other difference is reported (exit 1)."""
from __future__ import annotations

import importlib.util
import json

import pandas as pd

from helpers import REPO

spec = importlib.util.spec_from_file_location("compare_results", REPO / "scripts" / "compare_results.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def write_run(root, value=0.5, version="1", seconds=1.0, figure=b"png"):
    (root / "analysis").mkdir(parents=True)
    (root / "logs").mkdir()
    table = pd.DataFrame({"x": [1, 2], "value": [value, 0.1], "seconds": [seconds, 2.0]})
    table.to_parquet(root / "analysis/t.parquet")
    summary = {"a": value, "provenance": {"versions": version}, "history": [{"train_runtime": seconds, "loss": 1.0}]}
    (root / "analysis/summary.json").write_text(json.dumps(summary))
    (root / "analysis/f.png").write_bytes(figure)
    (root / "logs/job.log").write_text(f"took {seconds} s")


def test_equal_but_provenance_timings_and_logs(tmp_path, capsys):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", version="2", seconds=9.0)
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.strip() == "equal: 3 files"


def test_every_other_difference_is_reported(tmp_path, capsys):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", value=0.25, figure=b"other")
    (tmp_path / "b" / "analysis" / "extra.md").write_text("new")
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    assert "only in" in out and "extra.md" in out
    assert "differs: analysis/t.parquet: table" in out and "differs: analysis/summary.json" in out
    assert "differs: analysis/f.png: bytes" in out
    assert compare.main([str(tmp_path / "a"), str(tmp_path / "b"), "--skip", "analysis/*"]) == 0
