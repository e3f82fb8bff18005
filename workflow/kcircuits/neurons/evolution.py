"""Knowledge neurons across the checkpoints of one training seed: how many, in which layers, how stable.

Pure pandas over the per-seed concatenation of the per-checkpoint tables (neurons/stage.py), each with
an `order` column (place in training order, 0 = first):

    facts    row per (fact, target_kind, method) at every checkpoint: every sampled fact, with or
             without knowledge neurons
    neurons  row per (fact, target_kind, method, knowledge neuron): `index` (flat, identifies the
             neuron), `layer`

Notation: N_t(f) is the set of `index` of fact f's knowledge neurons at checkpoint t for one method
and target kind (empty when it has none); a cell is (seed, checkpoint, type, freq_group, attribute,
method, target_kind) and its facts are its rows of `facts`. first / final are the seed's first / last
checkpoint in training order, prev(t) the one just before t. Like the circuit Jaccards of
analysis/topology.py, a ratio whose denominator is 0 (0/0) is NaN and left out of a mean.

evolution: row per cell
    n_facts           facts of the cell
    neurons_per_fact  mean over its facts of |N_t(f)| (= facts.parquet n_neurons; a fact without
                      neurons counts as 0)
    mean_layer        mean `layer` over the cell's (fact, neuron) rows of `neurons` (a neuron that is
                      a knowledge neuron of two facts counts twice); NaN without neurons
    jaccard_prev      mean over facts of |N_t & N_prev(t)| / |N_t | N_prev(t)|; facts with both sets
                      empty left out; NaN at the first checkpoint (and when every fact is left out)
    jaccard_final     the same against N_final (1 at the final checkpoint, NaN if all sets are empty)
    share_of_first    mean, over facts with N_first non-empty, of |N_t & N_first| / |N_first|: the
                      share of the first checkpoint's neurons still knowledge neurons at t; for
                      target_kind original, the survival of the base model's neurons of a revised
                      fact's original value while the new value overwrites it
    share_in_value    target_kind original only (NaN for value rows): mean, over facts with
                      N_t(original) non-empty, of |N_t(original) & N_t(value)| / |N_t(original)|,
                      same checkpoint and method: the original value's neurons that now serve the
                      current value
layer_distribution: row per cell with neurons and layer 0..n_layers-1 (zero counts included)
    count             the cell's (fact, neuron) rows in that layer
    share             count / the cell's rows (sums to 1 over the layers of a cell)
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

PROGRESS = ["seed", "checkpoint", "order", "phase", "epoch", "global_step", "tokens_seen"]  # where present
GROUP = ["type", "freq_group", "attribute", "method", "target_kind"]
METRICS = ["n_facts", "neurons_per_fact", "mean_layer", "jaccard_prev", "jaccard_final", "share_of_first",
           "share_in_value"]
FACT_METRICS = ["n_neurons", "jaccard_prev", "jaccard_final", "share_of_first", "share_in_value"]
_EMPTY = frozenset()


def cell_keys(frame: pd.DataFrame) -> list[str]:
    """The checkpoint columns `frame` has (PROGRESS order), then GROUP: one cell of one checkpoint."""
    return [c for c in PROGRESS if c in frame.columns] + GROUP


def neuron_sets(neurons: pd.DataFrame) -> dict[tuple, frozenset]:
    """(seed, order, fact, method, target_kind) -> frozenset of the fact's knowledge-neuron indices."""
    if neurons.empty:
        return {}
    grouped = neurons.groupby(["seed", "order", "fact", "method", "target_kind"], sort=False)["index"]
    return {key: frozenset(int(i) for i in values) for key, values in grouped}


def jaccard(a: frozenset, b: frozenset) -> float:
    """|A & B| / |A | B|; NaN when both are empty."""
    union = len(a | b)
    return len(a & b) / union if union else math.nan


def share(part: frozenset, whole: frozenset) -> float:
    """|part & whole| / |whole|; NaN when `whole` is empty."""
    return len(part & whole) / len(whole) if whole else math.nan


def fact_metrics(neurons: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    """`facts` with FACT_METRICS per row (n_neurons = |N_t(f)|, then the per-fact terms of the means of
    the module docstring); the neurons of a fact missing from `neurons` at a checkpoint: none."""
    sets = neuron_sets(neurons)
    orders = {seed: sorted(int(o) for o in part.unique()) for seed, part in facts.groupby("seed")["order"]}
    rows = []
    for seed, order, fact, method, kind in facts[["seed", "order", "fact", "method", "target_kind"]].itertuples(
            index=False):
        seq = orders[seed]

        def at(o, k=kind):
            return sets.get((seed, o, fact, method, k), _EMPTY)

        now, i = at(order), seq.index(int(order))
        rows.append((len(now), jaccard(now, at(seq[i - 1])) if i > 0 else math.nan, jaccard(now, at(seq[-1])),
                     share(now, at(seq[0])), share(at(order, "value"), now) if kind == "original" else math.nan))
    values = np.array(rows, dtype=float).reshape(len(rows), len(FACT_METRICS))
    return facts.assign(**{name: values[:, j] for j, name in enumerate(FACT_METRICS)})


def evolution(neurons: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    """Row per cell of `facts` (checkpoint columns, GROUP) with METRICS, in training order."""
    keys = cell_keys(facts)
    per_fact = fact_metrics(neurons, facts)
    out = per_fact.groupby(keys, sort=False, dropna=False).agg(
        n_facts=("fact", "size"), neurons_per_fact=("n_neurons", "mean"), jaccard_prev=("jaccard_prev", "mean"),
        jaccard_final=("jaccard_final", "mean"), share_of_first=("share_of_first", "mean"),
        share_in_value=("share_in_value", "mean")).reset_index()
    join = ["seed", "order", *GROUP]
    if neurons.empty:
        layers = pd.DataFrame(columns=[*join, "mean_layer"])
    else:
        layers = neurons.groupby(join, sort=False)["layer"].mean().rename("mean_layer").reset_index()
    out = out.merge(layers.astype({"mean_layer": float}), on=join, how="left")
    return out[keys + METRICS].sort_values(["seed", "order", *GROUP], kind="stable").reset_index(drop=True)


def layer_distribution(neurons: pd.DataFrame, n_layers: int | None = None) -> pd.DataFrame:
    """Row per (cell with neurons, layer 0..n_layers-1): count and share of the cell's (fact, neuron)
    rows; n_layers: the model's (default: the highest layer seen + 1)."""
    keys = cell_keys(neurons)
    if n_layers is None:
        n_layers = int(neurons["layer"].max()) + 1 if len(neurons) else 0
    if neurons.empty or n_layers == 0:
        return pd.DataFrame(columns=[*keys, "layer", "count", "share"])
    if int(neurons["layer"].max()) >= n_layers or int(neurons["layer"].min()) < 0:
        raise ValueError(f"neuron layers outside 0..{n_layers - 1}")
    wide = (neurons.groupby([*keys, "layer"], sort=False).size().unstack("layer", fill_value=0)
            .reindex(columns=range(n_layers), fill_value=0))
    wide.columns.name = "layer"
    shares = wide.div(wide.sum(axis=1), axis=0)
    out = wide.reset_index().melt(id_vars=keys, var_name="layer", value_name="count")
    out["share"] = shares.reset_index().melt(id_vars=keys, var_name="layer", value_name="share")["share"].to_numpy()
    out = out.astype({"layer": int, "count": int, "share": float})
    return out.sort_values(["seed", "order", *GROUP, "layer"], kind="stable").reset_index(drop=True)


__all__ = ["evolution", "layer_distribution", "fact_metrics", "neuron_sets", "jaccard", "share", "cell_keys",
           "METRICS", "GROUP", "PROGRESS"]
