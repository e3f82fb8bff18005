"""The knowledge-neuron tables behind figures/neurons.py: every seed's table, checked and read in one
(read_tables), and the tidy per-seed frames the figures draw (before the mean over seeds).

A missing or unreadable table, or one without a column a figure needs, is a TableError naming the
option and file (`kcircuits figure` prints it on one line), and so is an empty erase or evolution table
(they have a row per attribute / cell whatever the neurons). The other tables are empty when nothing
qualified (EMPTY_REASONS); a frame without the rows a figure draws raises NoRows, and figures/stage.py
then draws a figure that says why (neurons.plot_nothing) instead of failing the workflow. Means are
taken within each seed first (over facts, or attributes pooled by summing counts); "last checkpoint":
each seed's highest `order`.
"""
from __future__ import annotations

import pandas as pd

from .. import TYPES
from ..io import TableError
from ..vocabulary import last_checkpoint
from .seeds import read_seed_tables

CHECKPOINT = ["order", "checkpoint", "epoch"]
FACT = ["type", "freq_group"]

# The columns each figure reads, by input option (the rest of a table is ignored).
COLUMNS = {
    "layers": [*CHECKPOINT, *FACT, "attribute", "method", "target_kind", "layer", "count"],
    "interventions": [*CHECKPOINT, *FACT, "fact", "method", "neurons", "operation", "prompts", "p_before", "p_after"],
    "edits": [*CHECKPOINT, *FACT, "fact", "success_at_1", "success_at_5", "changed", "ppl_intra_before",
              "ppl_intra_after", "ppl_inter_before", "ppl_inter_after"],
    "erase": [*CHECKPOINT, "attribute", "scope", "n_neurons", "accuracy_before", "accuracy_after", "ppl_before",
              "ppl_after"],
    "evolution": [*CHECKPOINT, *FACT, "attribute", "method", "target_kind", "n_facts", "neurons_per_fact",
                  "mean_layer", "jaccard_prev", "jaccard_final", "share_of_first"],
    "overlap": [*CHECKPOINT, *FACT, "attribute", "method", "budget", "n_neurons", "n_in_circuit"],
}


# Tables that are empty when nothing qualified, and why (the others always have rows).
EMPTY_REASONS = {
    "layers": "no knowledge neurons of a current value",
    "interventions": "no sampled fact has knowledge neurons",
    "edits": "no fact could be edited (none with knowledge neurons beyond the relation-level ones that the "
             "model answers at top-1, or neurons.edit.facts_per_attribute is 0)",
    "overlap": "no knowledge neurons in a cell with a circuit",
}


class NoRows(ValueError):
    """The tables hold no rows of what a figure draws (figures/stage.py names the files)."""


# ---- reading ------------------------------------------------------------------------------------------
def read_tables(paths, option: str) -> pd.DataFrame:
    """Every seed's table given to --OPTION in one, with an int `seed` column (from the path's `seed-N`
    where a table has none, seeds.read_seed_tables); each checked first for the columns COLUMNS[option]
    and, unless it may be empty (EMPTY_REASONS), for rows."""
    return read_seed_tables(paths, COLUMNS[option], f"--{option}", empty_ok=option in EMPTY_REASONS)


def _probed(table: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    return table[table["type"].isin(TYPES) & table["freq_group"].isin(groups)]


def _require(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if frame.empty:
        raise NoRows(f"no rows of {what}")
    return frame


def _pooled(frame: pd.DataFrame, keys: list[str], numerator: str, denominator: str, scale: float = 1.0) -> pd.DataFrame:
    """keys + value = scale x sum(numerator) / sum(denominator) per group (NaN where the sum is 0)."""
    sums = frame.groupby(keys, as_index=False, dropna=False)[[numerator, denominator]].sum()
    return sums.assign(value=scale * sums[numerator] / sums[denominator].where(sums[denominator] > 0))[[*keys, "value"]]


# ---- tidy per-seed frames (what is plotted, before the mean over seeds) ------------------------------
def layer_shares(layers: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, type, freq_group, method, layer, value: the layer's share (%) of the cell's knowledge neurons
    at the last checkpoint, value target, attributes pooled (counts summed, then divided); layers
    without neurons are 0, a cell without any neuron is left out."""
    data = _require(_probed(last_checkpoint(layers[layers["target_kind"] == "value"]), groups),
                    "the value target for the probed types and frequency groups")
    keys = ["seed", "type", "freq_group", "method"]
    counts = data.groupby([*keys, "layer"])["count"].sum()
    cells = data[keys].drop_duplicates()
    grid = pd.MultiIndex.from_frame(cells.merge(pd.DataFrame({"layer": range(int(layers["layer"].max()) + 1)}),
                                                how="cross"))
    counts = counts.reindex(grid, fill_value=0).astype(float)
    totals = counts.groupby(level=keys).transform("sum")
    share = (100 * counts / totals.where(totals > 0)).rename("value").reset_index()
    return share.dropna(subset=["value"])


def intervention_changes(interventions: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, method, operation, prompts, neurons, type, value: relative change (%) of P(target) at the
    last checkpoint, as the original: 100 x (mean P after - mean P before) / mean P before, means over
    the facts (each already the mean over its prompts) of a knowledge type."""
    data = _require(_probed(last_checkpoint(interventions), groups), "the probed types and frequency groups")
    keys = ["seed", "method", "operation", "prompts", "neurons", "type"]
    means = data.groupby(keys, as_index=False)[["p_before", "p_after"]].mean()
    before = means["p_before"].where(means["p_before"] > 0)
    return means.assign(value=100 * (means["p_after"] - means["p_before"]) / before)[[*keys, "value"]]


EDIT_SUCCESS = {"success_at_1": "success@1", "success_at_5": "success@5", "changed": "prediction changed"}
EDIT_PPL = {"intra": "intra-attribute PPL", "inter": "inter-attribute PPL"}


def edit_frame(edits: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, order, epoch, type, measure, value across training: `n_edits` (edited facts), the share of
    edits per EDIT_SUCCESS measure and the mean PPL `{intra,inter}_{before,after}` over edited facts."""
    data = _require(_probed(edits, groups), "the probed types and frequency groups")
    keys = ["seed", "order", "epoch", "type"]
    columns = [*EDIT_SUCCESS, *(f"ppl_{k}_{w}" for k in EDIT_PPL for w in ("before", "after"))]
    means = data.assign(**{c: data[c].astype(float) for c in columns}).groupby(keys)[columns].mean()
    means = means.rename(columns=lambda c: c.removeprefix("ppl_"))
    means["n_edits"] = data.groupby(keys).size()
    return means.reset_index().melt(id_vars=keys, var_name="measure", value_name="value")


ERASE = {"accuracy": "top-1 accuracy", "ppl": "PPL"}


def erase_frame(erase: pd.DataFrame) -> pd.DataFrame:
    """seed, attribute, scope, measure (accuracy | ppl), when (before | after), value at the last checkpoint."""
    data = last_checkpoint(erase)
    long = data.melt(id_vars=["seed", "attribute", "scope"], value_vars=[f"{m}_{w}" for m in ERASE
                                                                         for w in ("before", "after")])
    parts = long["variable"].str.rsplit("_", n=1, expand=True)
    return long.assign(measure=parts[0], when=parts[1])[["seed", "attribute", "scope", "measure", "when", "value"]]


EVOLUTION = {"neurons_per_fact": "knowledge neurons per fact", "mean_layer": "mean layer of the neurons",
             "jaccard_final": "Jaccard to final checkpoint", "jaccard_prev": "Jaccard to previous checkpoint"}
SURVIVAL = "share_of_first"


def _weighted(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """keys, measure, value: per group the weighted mean of each column over the rest (attributes): by
    their facts, the mean layer by their (fact, neuron) pairs (n_facts x neurons_per_fact), so counts
    and layers are those of the attributes pooled; NaN values and rows of weight 0 left out."""
    parts = []
    for column in columns:
        weight = frame["n_facts"] * (frame["neurons_per_fact"] if column == "mean_layer" else 1)
        part = frame.assign(weight=weight)[frame[column].notna() & (weight > 0)]
        part = part.assign(weighted=part[column] * part["weight"])
        parts.append(_pooled(part, keys, "weighted", "weight").assign(measure=column))
    return pd.concat(parts, ignore_index=True)[[*keys, "measure", "value"]]


def evolution_frame(evolution: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, order, epoch, method, type, freq_group, measure, value across training: the EVOLUTION
    measures of the value target and `share_of_first` of revised facts' original values, each the
    mean over attributes (_weighted)."""
    data = _probed(evolution, groups)
    keys = ["seed", "order", "epoch", "method", "type", "freq_group"]
    value = _require(data[data["target_kind"] == "value"], "the value target for the probed types and groups")
    original = data[(data["target_kind"] == "original") & (data["type"] == "revised")]
    parts = [_weighted(value, keys, list(EVOLUTION))]
    if len(original):
        parts.append(_weighted(original, keys, [SURVIVAL]))
    return pd.concat(parts, ignore_index=True)


def overlap_frame(overlap: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """seed, order, epoch, method, budget, type, freq_group, value across training: share of the cell's
    knowledge neurons in its circuit, attributes (circuit tasks) pooled: sum in circuit / sum of neurons."""
    data = _require(_probed(overlap, groups), "the probed types and frequency groups")
    data = data.assign(budget=data["budget"].astype(str))
    return _pooled(data, ["seed", "order", "epoch", "method", "budget", "type", "freq_group"], "n_in_circuit",
                   "n_neurons")


__all__ = ["COLUMNS", "EMPTY_REASONS", "TableError", "NoRows", "read_tables", "last_checkpoint", "layer_shares",
           "intervention_changes", "edit_frame", "erase_frame", "evolution_frame", "overlap_frame", "EDIT_SUCCESS",
           "EDIT_PPL", "ERASE", "EVOLUTION", "SURVIVAL"]
