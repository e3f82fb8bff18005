"""The project's shared vocabulary: one definition of each name that several stages use. Pure.

Checkpoints
    `epoch-000`: the model continual pre-training starts from (base model, or `model.init`);
    `epoch-EEE`: after continual epoch E; `step-SSSSSS`: after optimiser step S of continual
    pre-training. CHECKPOINT_WILDCARD is the same pattern for Snakemake wildcard constraints.
    Training order: by `training_key` -- epoch progress (checkpoint.json `epoch`, a float), then
    optimiser step, then a step checkpoint after the epoch checkpoint it coincides with.
Cells
    A cell is one (task, type, frequency group): CELL are its columns, "task/type/group" its key
    (score tensor names, report keys, analysis.topology.heatmap_cell).
Edge budgets
    Config `circuits.edge_budgets` hold edge counts (int) and fractions of all edges (float);
    tables label them as text (`budget` column): `budget_label` spells a config value, 0.1 -> "0.1",
    8000 -> "8000" (`budget_value`: the number); `at_budget` selects a table's rows of one label.
"""
from __future__ import annotations

import re
from typing import Iterable

CHECKPOINT_WILDCARD = r"(epoch|step)-[0-9]+"
_CHECKPOINT = re.compile(rf"^{CHECKPOINT_WILDCARD}$")
CELL = ["task", "type", "freq_group"]


def epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:03d}"


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def parse_checkpoint(name: str) -> tuple[str, int]:
    """'epoch-012' -> ('epoch', 12); 'step-000150' -> ('step', 150)."""
    if not _CHECKPOINT.match(name):
        raise ValueError(f"not a checkpoint name: {name!r}")
    kind, number = name.split("-")
    return kind, int(number)


def training_key(checkpoint: str, epoch: float, global_step: float) -> tuple[float, float, bool]:
    """Sort key of a checkpoint in training (see the module docstring); epoch and step may be means
    over training seeds."""
    return float(epoch), float(global_step), parse_checkpoint(checkpoint)[0] == "step"


def in_training_order(records: Iterable[tuple[str, float, int]]) -> list[str]:
    """Checkpoint names of (checkpoint, epoch, global_step) records, sorted by training_key (stable)."""
    return [r[0] for r in sorted(records, key=lambda r: training_key(*r))]


def with_order(table):
    """A DataFrame of one training seed's per-checkpoint rows (seed, checkpoint, epoch, global_step
    columns), with `order` (place in training order, 0 first) inserted before `checkpoint`, sorted
    by it (stable). ValueError for rows of several seeds or a checkpoint with two progress records."""
    seeds = sorted(table["seed"].unique())
    if len(seeds) > 1:
        raise ValueError(f"rows of several training seeds {seeds}")
    progress = table[["checkpoint", "epoch", "global_step"]].drop_duplicates()
    if progress["checkpoint"].duplicated().any():
        raise ValueError("a checkpoint appears with two progress records")
    ranked = {c: i for i, c in enumerate(in_training_order(progress.itertuples(index=False)))}
    table = table.copy()
    table.insert(list(table.columns).index("checkpoint"), "order", table["checkpoint"].map(ranked))
    return table.sort_values("order", kind="stable").reset_index(drop=True)


def last_checkpoint(table):
    """The rows of each training seed's last checkpoint in training order: the highest `order`
    (with_order's), or by training_key where the table has no `order` column."""
    if "order" in table.columns:
        return table[table["order"] == table.groupby("seed")["order"].transform("max")]
    last = {seed: in_training_order(part[["checkpoint", "epoch", "global_step"]].drop_duplicates()
                                    .itertuples(index=False))[-1] for seed, part in table.groupby("seed")}
    return table[table["checkpoint"] == table["seed"].map(last)]


def cell_key(task: str, etype: str, freq_group: str) -> str:
    return f"{task}/{etype}/{freq_group}"


def parse_cell_key(key: str) -> tuple[str, str, str]:
    """'city/new/high' -> ('city', 'new', 'high')."""
    parts = tuple(key.split("/"))
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not a cell key task/type/freq_group: {key!r}")
    return parts


def budget_value(budget) -> int | float:
    """A config edge budget as a number: a float (or text with a '.') is a fraction, else a count."""
    return float(budget) if isinstance(budget, float) or "." in str(budget) else int(budget)


def budget_label(budget) -> str:
    """A config edge budget as tables spell it (their `budget` column)."""
    return str(budget_value(budget))


def at_budget(table, budget: str, required: bool = True):
    """The rows of `table` (a DataFrame with a `budget` column) labelled `budget`; with `required`,
    none is a ValueError naming the labels present."""
    part = table[table["budget"].astype(str) == budget]
    if required and part.empty:
        raise ValueError(f"no circuits at edge budget {budget!r}; budgets present: {sorted(table['budget'].unique())}")
    return part
