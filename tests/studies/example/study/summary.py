"""Final recall: each seed's value of one evaluation metric at its last checkpoint (current values,
frequency groups pooled), per knowledge type and attribute; the mean over seeds; its findings section."""
from __future__ import annotations

import pandas as pd

from ...stats import json_number
from ...vocabulary import last_checkpoint

KEYS = ["type", "attribute"]


def final_recall(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (type, attribute): mean over seeds of `metric` at each seed's last checkpoint, and n_seeds."""
    rows = last_checkpoint(summary)
    rows = rows[(rows["metric"] == metric) & (rows["target"] == "current") & (rows["freq_group"] == "all")
                & rows["type"].isin(["new", "revised"])]
    if rows.empty:
        raise ValueError(f"the evaluation summary has no rows of metric {metric!r}")
    grouped = rows.groupby(KEYS, sort=True)
    return grouped["value"].mean().to_frame("value").join(grouped["seed"].nunique().rename("n_seeds")).reset_index()


def finding(table: pd.DataFrame, metric: str) -> dict:
    """The numbers findings.md restates: the pooled attribute's value per type."""
    pooled = table[table["attribute"] == "all"].set_index("type")["value"]
    return {"metric": metric, "final": {t: json_number(v) for t, v in pooled.items()}}


def markdown(summary: dict) -> list[str]:
    """The example's section of findings.md."""
    values = ", ".join(f"{t}: {v:.3f}" for t, v in summary["final"].items() if v is not None)
    return ["## Example: final recall", "", f"{summary['metric']} at each seed's last checkpoint ({values}).", ""]
