"""The shared vocabulary: training order of checkpoints, cell keys, edge-budget labels."""
from __future__ import annotations

import random

import pandas as pd
import pytest

from kcircuits import vocabulary as v
from kcircuits.train import schedule

# (name, epoch progress, global step) at 50 steps per epoch, in training order
RECORDS = [("epoch-000", 0.0, 0), ("step-000005", 0.1, 5), ("epoch-001", 1.0, 50), ("step-000075", 1.5, 75),
           ("epoch-002", 2.0, 100), ("step-000100", 2.0, 100), ("epoch-010", 10.0, 500)]


def test_training_order_is_progress_then_step_then_epoch_before_step():
    for seed in range(5):
        shuffled = random.Random(seed).sample(RECORDS, len(RECORDS))
        assert v.in_training_order(shuffled) == [r[0] for r in RECORDS]
    # the step checkpoint on an epoch boundary comes after that epoch's checkpoint, whatever the input order
    assert v.in_training_order([RECORDS[5], RECORDS[4]]) == ["epoch-002", "step-000100"]
    assert v.training_key("epoch-002", 2, 100) < v.training_key("step-000100", 2.0, 100)
    with pytest.raises(ValueError, match="not a checkpoint name"):
        v.training_key("final", 1.0, 10)


def test_schedule_lists_checkpoints_in_the_same_order():
    cfg = {"train": {"continual": {"epochs": 2}, "checkpoints": {"every_epochs": 1, "steps": [100, 75, 5]}}}
    names = schedule.checkpoint_names(cfg, steps_per_epoch=50)
    assert names == ["epoch-000", "step-000005", "epoch-001", "step-000075", "epoch-002", "step-000100"]
    records = [(n, schedule.progress(n, 50), schedule.global_step(n, 50)) for n in names]
    assert records == [r for r in RECORDS if r[0] in names]
    assert v.in_training_order(records[::-1]) == names


def test_cell_keys_round_trip():
    assert v.cell_key("city", "new", "high") == "city/new/high"
    assert v.parse_cell_key("city/new/high") == ("city", "new", "high")
    assert dict(zip(v.CELL, v.parse_cell_key("major/revised/low"))) == {"task": "major", "type": "revised",
                                                                      "freq_group": "low"}
    for bad in ("city/new", "city/new/high/x", "city//high"):
        with pytest.raises(ValueError):
            v.parse_cell_key(bad)


def test_budget_labels_and_the_budget_filter():
    assert [v.budget_label(b) for b in (0.1, 30, "0.25", "8000", 1e-05, 1.0)] == ["0.1", "30", "0.25", "8000",
                                                                                  "1e-05", "1.0"]
    assert v.budget_value("0.25") == 0.25 and isinstance(v.budget_value(30), int) and v.budget_value(1e-05) == 1e-05
    table = pd.DataFrame({"budget": ["0.1", "30", "0.1"], "x": [1, 2, 3]})
    assert v.at_budget(table, "0.1")["x"].tolist() == [1, 3]
    assert v.at_budget(table, v.budget_label(30))["x"].tolist() == [2]
    with pytest.raises(ValueError, match=r"edge budget '0.25'; budgets present: \['0.1', '30'\]"):
        v.at_budget(table, "0.25")
    assert v.at_budget(table, "0.25", required=False).empty


def test_order_and_last_checkpoint_per_seed():
    """with_order numbers each seed's checkpoints in training order (a step checkpoint inside epoch 1
    comes before epoch-001); last_checkpoint keeps each seed's last, with or without `order`."""
    rows = [("epoch-000", 0.0, 0), ("epoch-001", 1.0, 50), ("step-000020", 0.4, 20)]
    table = pd.DataFrame([{"seed": s, "checkpoint": c, "epoch": e, "global_step": g, "x": i}
                          for s in (0, 1) for i, (c, e, g) in enumerate(rows[: 3 - s])])  # seed 1: no step
    ordered = v.with_order(table[table["seed"] == 0])
    assert ordered["checkpoint"].tolist() == ["epoch-000", "step-000020", "epoch-001"]
    assert ordered["order"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="several training seeds"):
        v.with_order(table)
    expected = {(0, "epoch-001"), (1, "epoch-001")}
    assert set(zip(*v.last_checkpoint(table)[["seed", "checkpoint"]].values.T)) == expected
    with_order = pd.concat([v.with_order(part) for _, part in table.groupby("seed")])
    assert set(zip(*v.last_checkpoint(with_order)[["seed", "checkpoint"]].values.T)) == expected
