"""RECKONING: where the inner loop writes a fact. The circuits of theta' (circuits.py;
one table per seed and encoded method, concatenated by the summary job) against the main study's
circuits at the checkpoint the methods started from (source "continual": every type x frequency
group cell; they repeat identically under each encoded method of a seed).

- reckoning_circuit_finding:  per task (and ALL: tasks pooled) and encoded method, the means over
                              seeds of: the Jaccard of theta''s circuit with the continual circuits
                              (mean over the cells, and the largest cell), the |score|-weighted mean
                              layer of theta''s circuit and of the continual ones (mean over cells),
                              Hit@k of the circuits under each ablation (continual: mean over cells)
                              and theta''s own full-model Hit@k; and a one-sentence statement;
- reckoning_circuit_markdown: its "### Circuits of theta'" subsection of findings.md.

Within a seed the continual cells are averaged first, then the seeds; the pooled task averages the
tasks within a seed first. NaN (an empty circuit's Jaccard or mean layer) is left out of every mean.
Pure pandas: the same tables, in any row order, give the same dict.
"""
from __future__ import annotations

import pandas as pd

from ...stats import ALL, json_number
from . import ENCODED

KEYS = ["seed", "method", "task"]  # one circuit of theta' (per edge budget)
ABLATIONS = ("zero", "mean")        # always reported (None where not run); any others follow, sorted
STATED = ("reckoning_mt", "reckoning")  # the method the statement describes, first present (as reckoning.PREFERRED)
EFFECT = ("circuits of theta' (the inner loop's encoding of fresh entities' facts) against the pre-trained "
          "circuits of every type x frequency group at the checkpoint the methods started from")


def _at_budget(frame: pd.DataFrame | None, budget: str) -> pd.DataFrame:
    """The rows at edge budget `budget` (as stored, e.g. "0.1"); an empty frame for a table without rows."""
    if frame is None or frame.empty or "budget" not in frame.columns:
        return pd.DataFrame(columns=[*KEYS, "source"])
    return frame[frame["budget"].astype(str) == str(budget)]


def _hit_columns(hits: pd.DataFrame) -> list[pd.DataFrame]:
    """Per KEYS: hit_{source}_{ablation} (mean over the source's cells) and full_model (theta''s)."""
    out = []
    for source in ("encoded", "continual"):
        part = hits[hits["source"] == source]
        if len(part):
            hit = part.groupby([*KEYS, "ablation"], sort=True)["hit_at_k"].mean().unstack("ablation")
            out.append(hit.add_prefix(f"hit_{source}_"))
    encoded = hits[hits["source"] == "encoded"]
    if len(encoded) and "full_model_hit_at_k" in encoded.columns:
        out.append(encoded.groupby(KEYS, sort=True)["full_model_hit_at_k"].mean().rename("full_model").to_frame())
    return out


def _per_seed(compare: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """One row per KEYS: layer_encoded, n_edges (theta''s circuit), jaccard_mean / jaccard_max,
    layer_continual (over the continual cells), n_cells, and _hit_columns."""
    parts = []
    encoded, continual = compare[compare["source"] == "encoded"], compare[compare["source"] == "continual"]
    if len(encoded):
        parts.append(encoded.groupby(KEYS, sort=True).agg(layer_encoded=("mean_layer", "mean"),
                                                          n_edges=("n_edges", "mean")))
    if len(continual):
        parts.append(continual.groupby(KEYS, sort=True).agg(
            jaccard_mean=("jaccard_with_encoded", "mean"), jaccard_max=("jaccard_with_encoded", "max"),
            layer_continual=("mean_layer", "mean"), n_cells=("mean_layer", "size")))
    parts += _hit_columns(hits) if len(hits) else []
    if not parts:
        return pd.DataFrame(columns=KEYS)
    return pd.concat(parts, axis=1).sort_index().reset_index()


def _closest_cell(cells: pd.DataFrame) -> str | None:
    """The continual cell ("type/freq_group") with the largest mean Jaccard (ties: the first sorted)."""
    if cells.empty:
        return None
    j = cells.groupby(["type", "freq_group"], sort=True)["jaccard_with_encoded"].mean().dropna()
    return "/".join(map(str, j.idxmax())) if len(j) else None


def _block(rows: pd.DataFrame, cells: pd.DataFrame, ablations: list[str]) -> dict:
    """The means over seeds of `rows` (one per seed; _per_seed's columns), with the closest of `cells`
    (the continual compare rows behind them)."""
    m = rows.drop(columns=["seed", "method", "task"], errors="ignore").mean(numeric_only=True)

    def get(column: str):
        return json_number(m[column]) if column in m.index else None

    return {"jaccard": {"mean": get("jaccard_mean"), "max": get("jaccard_max"), "closest_cell": _closest_cell(cells)},
            "mean_layer": {"encoded": get("layer_encoded"), "continual": get("layer_continual")},
            "hit_at_k": {a: {"encoded": get(f"hit_encoded_{a}"), "continual": get(f"hit_continual_{a}")}
                         for a in ablations},
            "full_model_hit_at_k": get("full_model"), "n_edges": get("n_edges"),
            "n_cells": int(rows["n_cells"].max()) if "n_cells" in rows and rows["n_cells"].notna().any() else 0,
            "n_seeds": int(rows["seed"].nunique())}


def _depth(encoded, continual) -> str:
    if encoded is None or continual is None:
        return "has no measured mean layer"
    where = "deeper" if encoded > continual else "shallower" if encoded < continual else "as deep"
    return f"sits {where} (mean layer {encoded:.2f} vs {continual:.2f})"


def _circuit_statement(method: str, by_task: dict, tasks: list[str], budget: str, k: int) -> str:
    clauses = []
    for task in tasks:
        b = by_task[task][method]
        j, hit = b["jaccard"]["mean"], b["hit_at_k"]["zero"]
        overlap = "no measured overlap with" if j is None else f"a mean Jaccard of {j:.3f} with"
        hits = ("" if hit["encoded"] is None or hit["continual"] is None else
                f", its Hit@{k} under zero ablation {hit['encoded']:.2f} against their {hit['continual']:.2f}")
        clauses.append(f"the encoded circuit of {task} {_depth(**b['mean_layer'])} and has {overlap} the "
                       f"pre-trained circuits{hits}")
    return f"With {method}'s theta' (edge budget {budget}), " + "; ".join(clauses) + "."


def reckoning_circuit_finding(compare: pd.DataFrame, hits: pd.DataFrame, budget: str, k: int) -> dict:
    """Circuits of theta' against the continual (pre-trained) circuits at edge budget `budget`.

    -> {effect, budget, k, measured, methods (encoded, ENCODED order), tasks (sorted), seeds, ablations,
        by_task {task or ALL: {method: {jaccard {mean, max, closest_cell}, mean_layer {encoded,
        continual}, hit_at_k {ablation: {encoded, continual}}, full_model_hit_at_k, n_edges, n_cells,
        n_seeds}}}, method (the one stated), statement}; measured False (by_task empty) without rows."""
    compare, hits = _at_budget(compare, budget), _at_budget(hits, budget)
    per = _per_seed(compare, hits)
    base = {"effect": EFFECT, "budget": str(budget), "k": int(k)}
    if per.empty:
        return {**base, "measured": False, "methods": [], "tasks": [], "seeds": [], "ablations": list(ABLATIONS),
                "by_task": {}, "method": None,
                "statement": f"Not measured: no circuits of theta' at edge budget {budget}."}
    present = set(per["method"])
    methods = [m for m in ENCODED if m in present] + sorted(present - set(ENCODED))
    tasks = sorted(per["task"].unique())
    ablations = [*ABLATIONS, *sorted(set(hits.get("ablation", [])) - set(ABLATIONS))]
    continual = compare[compare["source"] == "continual"]
    by_task = {}
    for task in [*tasks, ALL]:
        by_task[task] = {}
        for method in methods:
            rows, cells = per[per["method"] == method], continual[continual["method"] == method]
            if task == ALL:
                rows = rows.drop(columns=["method", "task"]).groupby("seed", as_index=False).mean()
            else:
                rows, cells = rows[rows["task"] == task], cells[cells["task"] == task]
            by_task[task][method] = _block(rows, cells, ablations)
    method = next((m for m in STATED if m in present), methods[0])
    return {**base, "measured": True, "methods": methods, "tasks": tasks,
            "seeds": sorted(int(s) for s in per["seed"].unique()), "ablations": ablations, "by_task": by_task,
            "method": method, "statement": _circuit_statement(method, by_task, tasks, str(budget), int(k))}


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pair(block: dict, digits: int = 3) -> str:
    return f"{_fmt(block['encoded'], digits)} / {_fmt(block['continual'], digits)}"


def reckoning_circuit_markdown(c: dict) -> list[str]:
    """The "### Circuits of theta'" subsection: the statement and a row per task (ALL: pooled, with
    several tasks) and encoded method."""
    lines = ["### Circuits of theta'", "", c["statement"], ""]
    if not c["measured"]:
        return lines
    k = c["k"]
    lines += [f"EAP-IG circuits at edge budget {c['budget']}: theta' (the inner loop's encoding of fresh entities' "
              "facts) against the pre-trained circuits of every type x frequency group at the checkpoint the "
              f"methods started from; means over {len(c['seeds'])} seed(s), pre-trained values averaged over "
              "the cells first.", "",
              f"| task | method | Jaccard with pre-trained: mean (max, closest cell) | mean layer theta' / pre-trained "
              f"| Hit@{k} zero ablation theta' / pre-trained | Hit@{k} mean ablation theta' / pre-trained "
              f"| theta' full model Hit@{k} | seeds |", "|---|---|---|---|---|---|---|---|"]
    for task in c["tasks"] + ([ALL] if len(c["tasks"]) > 1 else []):
        for method, b in c["by_task"][task].items():
            j, hit = b["jaccard"], b["hit_at_k"]
            lines.append(f"| {task} | {method} | {_fmt(j['mean'])} ({_fmt(j['max'])}, {j['closest_cell'] or 'n/a'}) | "
                         f"{_pair(b['mean_layer'], 2)} | {_pair(hit['zero'])} | {_pair(hit['mean'])} | "
                         f"{_fmt(b['full_model_hit_at_k'])} | {b['n_seeds']} |")
    return lines + [""]


__all__ = ["reckoning_circuit_finding", "reckoning_circuit_markdown"]
