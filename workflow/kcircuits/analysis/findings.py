"""The three findings of the original study, tested on this run's numbers, honestly either way.

1. Relevance: knowledge relevant to what the model already knows (K_rel, revised entities) is
   acquired faster than completely new knowledge (K_compl, new entities).
2. Phase shift: circuits go through formation, then optimisation (a change point in their curves).
3. Deep-to-shallow: circuit edges move from deeper to shallower layers over training.

Finding 1 is computed here from the per-entity evaluation tables. Findings 2 and 3 come from the
topology stage's summaries (phase_shift.json, depth_trend.json) and are restated here with their
verdict. Every interval is a seeded bootstrap, so the same tables give the same summary.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

LEARNING_METRIC = "query_top1"  # first answer token of the training-template query, greedy top-1


def learning_curves(entity_tables: list[pd.DataFrame], metric: str = LEARNING_METRIC) -> pd.DataFrame:
    """Per (seed, entity): the mean `metric` over attributes at every continual checkpoint.

    -> columns seed, entity_id, type, freq_group, epoch, value (epoch-000, the start, is dropped:
    it measures the base model, not acquisition).
    """
    frames = []
    for table in entity_tables:
        cur = table[(table["target"] == "current") & (table["epoch"] > 0)]
        frames.append(cur.groupby(["seed", "entity_id", "type", "freq_group", "epoch"], as_index=False)[metric].mean()
                      .rename(columns={metric: "value"}))
    return pd.concat(frames, ignore_index=True)


def _group_difference(means: pd.DataFrame, weights: pd.Series) -> np.ndarray:
    """Entity-weighted mean over frequency groups of (revised - new); means: [group x type] columns
    holding scalars or [B] bootstrap arrays."""
    groups = [g for g in means.index if np.all(pd.notna(means.at[g, "new"])) and np.all(pd.notna(means.at[g, "revised"]))]
    w = weights.loc[groups].to_numpy(dtype=float)
    diffs = np.stack([np.asarray(means.at[g, "revised"]) - np.asarray(means.at[g, "new"]) for g in groups])
    return np.tensordot(w / w.sum(), diffs, axes=1)


def _bootstrap_means(auc: pd.DataFrame, n_bootstrap: int, rng: np.random.Generator) -> pd.DataFrame:
    """[group x type] -> [B] resampled mean AUC: entities resampled within (seed, type, group)."""
    out: dict = {}
    for (group, etype), part in auc.groupby(["freq_group", "type"], sort=True):
        total = np.zeros(n_bootstrap)
        for _, stratum in part.groupby("seed", sort=True):
            values = stratum["auc"].to_numpy()
            draws = rng.integers(0, len(values), size=(n_bootstrap, len(values)))  # [B, n]
            total += values[draws].sum(axis=1)
        out.setdefault(etype, {})[group] = total / len(part)
    return pd.DataFrame(out)


def relevance_finding(entity_tables: list[pd.DataFrame], n_bootstrap: int = 2000, seed: int = 0,
                      metric: str = LEARNING_METRIC) -> dict:
    """Finding 1: is K_rel learned faster than K_compl?

    Speed is the area under each entity's learning curve (its mean `metric` over continual
    checkpoints, i.e. progress-averaged recall: higher = learned earlier). The effect is the AUC of
    revised minus new entities, compared within each frequency group (the two types share one
    frequency distribution by construction, so this removes only noise) and averaged over groups.
    The 95% interval resamples entities within (seed, type, group). Early gaps are reported as well:
    the largest difference of the two types' mean curves, and at which epoch.
    """
    curves = learning_curves(entity_tables, metric)
    auc = curves.groupby(["seed", "entity_id", "type", "freq_group"], as_index=False)["value"].mean()
    auc = auc.rename(columns={"value": "auc"})
    rng = np.random.default_rng([seed, 0x72656C])  # "rel": deterministic intervals
    weights = auc.groupby("freq_group").size()
    means = auc.groupby(["freq_group", "type"])["auc"].mean().unstack("type")
    effect = float(_group_difference(means, weights))
    low, high = np.percentile(_group_difference(_bootstrap_means(auc, n_bootstrap, rng), weights), [2.5, 97.5])
    mean_curves = curves.groupby(["type", "epoch"])["value"].mean().unstack("type")
    gap = (mean_curves["revised"] - mean_curves["new"]) if {"new", "revised"} <= set(mean_curves) else pd.Series(dtype=float)
    per_group = means.assign(difference=means["revised"] - means["new"])
    holds = bool(low > 0)
    verdict = ("holds: revised (K_rel) facts are learned faster" if holds else
               "reversed: new (K_compl) facts are learned faster" if high < 0 else
               "not supported: no difference distinguishable from noise")
    return {
        "finding": "relevant knowledge is acquired faster than completely new knowledge",
        "holds": holds,
        "verdict": verdict,
        "metric": metric,
        "effect": "AUC(revised) - AUC(new), mean over continual checkpoints, within frequency groups",
        "difference": round(effect, 4),
        "interval_95": [round(float(low), 4), round(float(high), 4)],
        "per_group": {g: {k: round(float(v), 4) for k, v in row.items()} for g, row in per_group.iterrows()},
        "largest_gap": ({"epoch": float(gap.idxmax()), "difference": round(float(gap.max()), 4)}
                        if len(gap) else None),
        "entities": {t: int(n) for t, n in auc.groupby("type")["entity_id"].nunique().items()},
        "seeds": sorted(int(s) for s in auc["seed"].unique()),
        "n_bootstrap": n_bootstrap,
    }
