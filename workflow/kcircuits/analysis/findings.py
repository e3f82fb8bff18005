"""The three findings of the original study, tested on this run's numbers, honestly either way.

1. Relevance: knowledge relevant to what the model already knows (K_rel, revised entities) is
   acquired faster than completely new knowledge (K_compl, new entities).
2. Phase shift: circuits go through formation, then optimisation (a change point in their curves).
3. Deep-to-shallow: circuit edges move from deeper to shallower layers over training.

Finding 1 is computed here from the per-entity evaluation tables. Findings 2 and 3 come from the
topology stage's summaries (phase_shift.json, depth_trend.json) and are restated here with their
verdict. Every interval is a seeded bootstrap, so the same tables give the same summary.

Besides them, the knowledge-neuron check of Dai et al. (2022), from the neuron stage's interventions
(neuron_finding): do a fact's knowledge neurons carry *that* fact at the end of training?
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import stage_rng, stratified_means
from ..vocabulary import last_checkpoint

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
    groups = [g for g in means.index
              if np.all(pd.notna(means.at[g, "new"])) and np.all(pd.notna(means.at[g, "revised"]))]
    w = weights.loc[groups].to_numpy(dtype=float)
    diffs = np.stack([np.asarray(means.at[g, "revised"]) - np.asarray(means.at[g, "new"]) for g in groups])
    return np.tensordot(w / w.sum(), diffs, axes=1)


def _bootstrap_means(auc: pd.DataFrame, n_bootstrap: int, rng: np.random.Generator) -> pd.DataFrame:
    """[group x type] -> [B] resampled mean AUC: entities resampled within (seed, type, group)."""
    out: dict = {}
    for (group, etype), part in auc.groupby(["freq_group", "type"], sort=True):
        boot = stratified_means(part[["auc"]].to_numpy(), part["seed"].to_numpy(), n_bootstrap, rng)
        out.setdefault(etype, {})[group] = boot[:, 0]
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
    gap = ((mean_curves["revised"] - mean_curves["new"]) if {"new", "revised"} <= set(mean_curves)
           else pd.Series(dtype=float))
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


# ---- knowledge neurons ---------------------------------------------------------------------------
# (neurons, prompts) of an interventions.parquet row -> its condition in neuron_finding
CONDITIONS = {("knowledge", "own"): "own", ("random", "own"): "random", ("knowledge", "unrelated"): "unrelated"}
CONTRASTS = {"own_minus_random": ("own", "random"), "own_minus_unrelated": ("own", "unrelated")}
NEURON_FINDING = ("suppressing a fact's knowledge neurons lowers the probability of its own value more than "
                  "suppressing random neurons, and more than other facts' values")


def intervention_facts(table: pd.DataFrame, method: str, operation: str) -> pd.DataFrame:
    """Row per (seed, fact) with knowledge neurons: freq_group and the relative change of P(value) per
    condition (own / random / unrelated, NaN where missing) and per contrast (CONTRASTS, paired)."""
    part = table[(table["method"] == method) & (table["operation"] == operation)]
    part = part.assign(condition=[CONDITIONS.get(k) for k in zip(part["neurons"], part["prompts"])])
    has = part[(part["condition"] == "own") & (part["n_neurons"] > 0)][["seed", "fact"]]
    part = part.merge(has, on=["seed", "fact"])
    wide = (part.groupby(["seed", "fact", "freq_group", "condition"])["change"].mean().unstack("condition")
            .reindex(columns=list(dict.fromkeys(CONDITIONS.values()))))
    wide.columns.name = None
    for name, (a, b) in CONTRASTS.items():
        wide[name] = wide[a] - wide[b]
    return wide.reset_index()


def _interval(values: np.ndarray, strata: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> dict:
    """Mean of the finite values and its 95% bootstrap interval (facts resampled within `strata`)."""
    ok = np.isfinite(values)
    if not ok.any():
        return {"mean": None, "interval_95": [None, None], "n_facts": 0}
    draws = np.concatenate([idx[rng.integers(0, len(idx), size=(n_bootstrap, len(idx)))]
                            for idx in (np.flatnonzero(strata == s) for s in np.unique(strata))], axis=1)  # [B, n]
    with np.errstate(invalid="ignore", divide="ignore"):
        boot = np.where(ok, values, 0.0)[draws].sum(axis=1) / ok[draws].sum(axis=1)
    low, high = np.nanpercentile(boot, [2.5, 97.5])
    return {"mean": round(float(values[ok].mean()), 4), "interval_95": [round(float(low), 4), round(float(high), 4)],
            "n_facts": int(ok.sum())}


def _side(stat: dict) -> str:
    """Where a statistic's interval lies: below / above 0, or 'includes 0' (also when missing)."""
    low, high = stat["interval_95"]
    return "below 0" if high is not None and high < 0 else "above 0" if low is not None and low > 0 else "includes 0"


def intervention_block(facts: pd.DataFrame, operation: str, n_bootstrap: int, seed: int, label: str) -> dict:
    """Means with intervals of every condition and contrast of intervention_facts rows, and the verdict:
    suppress holds when both contrasts lie below 0; amplify holds when the own change lies above 0."""
    rng = stage_rng(seed, label)  # per block: independent of the others
    strata = facts["seed"].to_numpy()
    block = {"n_facts": int(len(facts))}
    for name in [*dict.fromkeys(CONDITIONS.values()), *CONTRASTS]:
        block[name] = _interval(facts[name].to_numpy(dtype=float), strata, n_bootstrap, rng)
    sides = {name: _side(block[name]) for name in ["own", *CONTRASTS]}
    if operation == "suppress":
        holds = all(sides[c] == "below 0" for c in CONTRASTS)
        reversed_ = all(sides[c] == "above 0" for c in CONTRASTS)
        verdict = ("holds: own prompts lose more than with random neurons and than unrelated prompts" if holds else
                   "reversed: own prompts lose less than with random neurons and than unrelated prompts" if reversed_
                   else "not supported: " + ", ".join(f"{c.replace('_', ' ')} {sides[c]}" for c in CONTRASTS))
    else:
        holds = sides["own"] == "above 0"
        verdict = ("holds: amplifying a fact's knowledge neurons raises P(its value)" if holds else
                   f"not supported: own change {sides['own']}")
    return block | {"holds": bool(holds), "verdict": verdict}


def neuron_finding(interventions: list[pd.DataFrame], n_bootstrap: int = 2000, seed: int = 0) -> dict:
    """Knowledge neurons: at each training seed's last checkpoint, does suppressing (x0) a fact's knowledge
    neurons lower P(its value) more than (a) as many random neurons of the same layers, on its own
    prompts, and (b) the same neurons on an unrelated fact's prompts? And does amplifying (x2) raise it?

    Per fact, `change` = relative change of P(target) (interventions.parquet); facts without knowledge
    neurons (n_neurons 0 for own prompts) are left out. Means are over facts; contrasts are per-fact
    paired differences own - random and own - unrelated; 95% intervals resample facts within each
    seed (seeded: the same tables give the same numbers). The headline is the IG method's suppression:
    holds when both contrasts' intervals lie below 0.

    -> {finding, holds, verdict, method: "ig", seeds, checkpoints {seed: last checkpoint}, n_bootstrap,
        effect, facts_without_neurons, suppress, amplify, per_group {group: {suppress, amplify}},
        baseline {suppress, amplify}}; each block: n_facts, own, random, unrelated, own_minus_random,
        own_minus_unrelated (each {mean, interval_95, n_facts}; None where no fact has it), holds, verdict.
    """
    tables = [t for t in interventions if len(t)]
    last = last_checkpoint(pd.concat(tables, ignore_index=True)) if tables else pd.DataFrame(
        columns=["seed", "checkpoint", "fact", "freq_group", "method", "neurons", "operation", "prompts",
                 "n_neurons", "change"])
    own_ig = last[(last["method"] == "ig") & (last["neurons"] == "knowledge") & (last["prompts"] == "own")]
    blocks, per_group = {}, {}
    for method in ("ig", "baseline"):
        for op in ("suppress", "amplify"):
            facts = intervention_facts(last, method, op)
            blocks[method, op] = intervention_block(facts, op, n_bootstrap, seed, f"{method}/{op}")
            if method == "ig":
                for group, part in facts.groupby("freq_group", sort=True):
                    per_group.setdefault(str(group), {})[op] = intervention_block(
                        part, op, n_bootstrap, seed, f"{method}/{op}/{group}")
    head = blocks["ig", "suppress"]
    return {
        "finding": NEURON_FINDING, "holds": head["holds"], "verdict": head["verdict"], "method": "ig",
        "seeds": sorted(int(s) for s in last["seed"].unique()),
        "checkpoints": {str(int(s)): str(c) for s, c in last.groupby("seed")["checkpoint"].first().items()},
        "n_bootstrap": n_bootstrap,
        "effect": "relative change of P(value), (p_after - p_before) / p_before, mean over facts",
        "facts_without_neurons": int(own_ig[own_ig["n_neurons"] == 0][["seed", "fact"]].drop_duplicates().shape[0]),
        "suppress": head, "amplify": blocks["ig", "amplify"],
        "per_group": per_group,
        "baseline": {op: blocks["baseline", op] for op in ("suppress", "amplify")},
    }
