"""Join the per-checkpoint evaluation tables into one table across training, with margins.

Per-checkpoint cells are the finest level (target x type x frequency group x attribute). The summary
adds margins with the label "all" (over attributes, over frequency groups, over both): each margin
value is the item-weighted mean of its cells, i.e. the mean over all the items it covers. Filter on
`attribute == "all"` (or a specific attribute) before averaging, or margins count twice.
"""
from __future__ import annotations

import pandas as pd

from ..stats import ALL
from ..vocabulary import in_training_order

CHECKPOINT_COLUMNS = ["seed", "order", "checkpoint", "phase", "epoch", "global_step", "tokens_seen"]
METRIC_KEYS = ["metric", "target", "type", "freq_group", "attribute"]
SUMMARY_COLUMNS = CHECKPOINT_COLUMNS + METRIC_KEYS + ["value", "n", "chance"]


def with_margins(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells plus their "all" margins over attribute, freq_group, and both (item-weighted means; the
    chance level too, since full-value chance differs between attributes)."""
    keys = [c for c in cells.columns if c not in ("value", "n", "chance")]
    weighted = cells.assign(total=cells["value"] * cells["n"], chance_total=cells["chance"] * cells["n"])
    out = [cells]
    for collapsed in (["attribute"], ["freq_group"], ["freq_group", "attribute"]):
        by = [k for k in keys if k not in collapsed]
        margin = weighted.groupby(by, sort=False, dropna=False).agg(
            total=("total", "sum"), n=("n", "sum"), chance_total=("chance_total", lambda c: c.sum(min_count=1)),
            low=("chance", "min"), high=("chance", "max")).reset_index()
        margin["value"] = margin["total"] / margin["n"]
        margin["chance"] = (margin["chance_total"] / margin["n"]).where(margin["low"] != margin["high"], margin["low"])
        out.append(margin.drop(columns=["total", "chance_total", "low", "high"]).assign(**{c: ALL for c in collapsed}))
    return pd.concat(out, ignore_index=True)[cells.columns]


def checkpoint_order(tables: list[pd.DataFrame]) -> dict[str, int]:
    """Checkpoint name -> place in training (kcircuits.vocabulary.training_key, from checkpoint.json).

    Every table must hold exactly one checkpoint of one training seed, each checkpoint once.
    """
    meta = []
    seeds = {s for t in tables for s in t["seed"].unique()}
    if len(seeds) > 1:
        raise ValueError(f"evaluation tables of several training seeds {sorted(seeds)}; summarise one seed at a time")
    for table in tables:
        names = table["checkpoint"].unique()
        if len(names) != 1:
            raise ValueError(f"an evaluation table holds {len(names)} checkpoints; expected one")
        meta.append(table.iloc[0][["checkpoint", "epoch", "global_step"]])
    meta = pd.DataFrame(meta)
    repeated = meta["checkpoint"][meta["checkpoint"].duplicated()]
    if len(repeated):
        raise ValueError(f"checkpoint evaluated twice: {sorted(set(repeated))}")
    ranked = in_training_order(meta[["checkpoint", "epoch", "global_step"]].itertuples(index=False))
    return {name: i for i, name in enumerate(ranked)}


def summarise(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One table across checkpoints with margins; `order` is each checkpoint's place in training."""
    if not tables:
        raise ValueError("no evaluation tables to summarise")
    order = checkpoint_order(tables)
    summary = pd.concat([with_margins(t) for t in tables], ignore_index=True)
    summary["order"] = summary["checkpoint"].map(order)
    summary = summary[SUMMARY_COLUMNS].sort_values(["order"] + METRIC_KEYS, kind="stable")
    return summary.reset_index(drop=True)


def summarise_entities(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-entity tables of every checkpoint in one, with the same `order` as the summary."""
    if not tables:
        raise ValueError("no entity tables to summarise")
    order = checkpoint_order(tables)
    out = pd.concat(tables, ignore_index=True)
    out.insert(0, "order", out["checkpoint"].map(order))
    return out.sort_values(["order", "target", "entity_id", "attribute"], kind="stable").reset_index(drop=True)
