"""The `topology` pipeline stage: `kcircuits topology ACTION ...`, one action per Snakemake rule.

    tables       one replicate (seed): topology.parquet + layers.parquet across its checkpoints
    phase-shift  every seed: two-segment fits of edge Jaccard to the final circuit and of circuit
                 Hit@k vs epoch, per cell -> phase_shift.parquet + phase_shift.json
    depth-trend  every seed: slope of the mean layer vs epoch, per cell and pooled, with bootstrap
                 intervals -> depth_trend.parquet + depth_trend.json
(the figures: `kcircuits figure topology_entropy | topology_jaccard | ...`, figures/stage.py)

Settings: analysis.topology (thresholds, bootstrap size, heatmap cell), circuits.edge_budgets (the
budget labels; the first is the headline budget), circuits.ablations and hit_k (which Hit@k curve).
Training progress is each checkpoint's `epoch` from checkpoint.json (epoch 0 = the start model).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .. import io
from ..settings import actions, add_paths, command, run_handler
from ..stats import stage_rng
from ..vocabulary import CELL, at_budget, budget_label, cell_key

log = logging.getLogger("kcircuits")


def add_parser(subparsers) -> None:
    acts = actions(subparsers, "topology", "circuit topology across checkpoints: Jaccard, layers, phase shift, depth",
                   run, __doc__.split("\n")[0])
    a = command(acts, "tables", "one seed: topology and layer tables across its checkpoints", "analysis", _tables)
    add_paths(a, "scores", "circuits", many=True)
    a.add_argument("--seed", type=int, required=True, help="the training replicate")
    add_paths(a, "out_topology", "out_layers")
    a = command(acts, "phase-shift", "every seed: two-segment fits of Jaccard and Hit@k", "analysis", _phase_shift)
    add_paths(a, "topology", "hits", many=True)
    add_paths(a, "out_table", "out_json")
    a = command(acts, "depth-trend", "every seed: slope of the mean layer vs epoch", "analysis", _depth_trend)
    add_paths(a, "topology", many=True)
    add_paths(a, "out_table", "out_json")


def run(args) -> None:
    run_handler(args)


def _rng(seed: int, *key) -> np.random.Generator:
    """A generator per (stage seed, cell, ...): adding a cell or a seed leaves the others' intervals."""
    return stage_rng(seed, "/".join(map(str, key)))


def _config(s: dict) -> dict:
    """analysis.topology plus what it needs of circuits: budget labels, Hit@k ablation and k (torch-free)."""
    c = s["circuits"]
    return {**s["analysis"]["topology"], "budgets": [budget_label(b) for b in c["edge_budgets"]],
            "ablation": "zero" if "zero" in c["ablations"] else c["ablations"][0], "hit_k": c["hit_k"]}


# ---- actions ---------------------------------------------------------------------------------------
def _tables(args, s: dict) -> None:
    from .topology import read_checkpoint, topology_tables

    if len(args.scores) != len(args.circuits):
        raise SystemExit("--scores and --circuits must pair up (one of each per checkpoint)")
    checkpoints = [read_checkpoint(sp, cp, args.seed) for sp, cp in zip(args.scores, args.circuits)]
    topo, layers = topology_tables(checkpoints, _config(s)["budgets"], args.seed)
    prov = {**io.provenance("topology", s["seed"], s, "torch"), "replicate_seed": args.seed}
    io.write_parquet(topo, args.out_topology, prov)
    io.write_parquet(layers, args.out_layers, prov)
    log.info("seed %d: %d circuits over %d checkpoints", args.seed, len(topo), len(checkpoints))


def hit_curves(hits: pd.DataFrame, budget: str, ablation: str) -> pd.DataFrame:
    """Each circuit's Hit@k on its own cell's prompts (not cross-group) at one budget and ablation."""
    hits = at_budget(hits, budget)
    own = hits[(hits["target_type"] == hits["type"]) & (hits["target_freq_group"] == hits["freq_group"])
               & (hits["ablation"] == ablation)]
    return own[["checkpoint", "epoch", *CELL, "hit_at_k"]]


def phase_shift_table(topology: pd.DataFrame, hits: dict[int, pd.DataFrame], cfg: dict, seed: int) -> pd.DataFrame:
    """Per seed x cell x curve: two-segment fit vs one line (first budget); hits: seed -> summary_hits.
    seed: the stage seed behind the null simulations (one generator per curve)."""
    from .trends import phase_shift

    budget, p = cfg["budgets"][0], cfg["phase_shift"]
    curve_hit = f"hit_at_{cfg['hit_k']}"
    rows = []
    for replicate, table in at_budget(topology, budget).groupby("seed", sort=True):
        curves = {"edge_jaccard_final": table.rename(columns={"edge_jaccard_final": "y"})}
        if replicate in hits:
            curves[curve_hit] = hit_curves(hits[replicate], budget, cfg["ablation"]).rename(columns={"hit_at_k": "y"})
        for curve, frame in curves.items():
            for cell, part in frame.groupby(CELL, sort=True):
                part = part.sort_values("epoch", kind="stable").reset_index(drop=True)
                fit = phase_shift(part["epoch"], part["y"], p["min_gain"], p["min_points"], p["alpha"],
                                  cfg["n_bootstrap"], _rng(seed, "phase_null", replicate, curve, *cell))
                at = fit.pop("index")
                rows.append({"seed": int(replicate), **dict(zip(CELL, cell)), "budget": budget, "curve": curve,
                             "ablation": cfg["ablation"] if curve == curve_hit else "",
                             "breakpoint_checkpoint": part["checkpoint"][at] if at >= 0 else "",
                             "breakpoint_epoch": fit.pop("breakpoint"), **fit})
    return pd.DataFrame(rows)


def _num(x) -> float | None:
    """A float for JSON, None for NaN (strict JSON has no NaN)."""
    return float(x) if x is not None and np.isfinite(x) else None


def _spread(values: dict, n_boot: int, rng) -> dict:
    """Median, min, max over seeds (values: seed -> breakpoint epoch) and, with >= 2 seeds, an interval."""
    from .trends import median_interval

    v = [x for x in values.values() if np.isfinite(x)]
    return {"median": float(np.median(v)) if v else None, "min": float(min(v)) if v else None,
            "max": float(max(v)) if v else None, "n_seeds": len(v),
            "interval_95": median_interval(v, n_boot, rng) if len(v) >= 2 else None}


def phase_shift_summary(table: pd.DataFrame, cfg: dict, seed: int) -> dict:
    """Per curve: how many fits found a shift, the breakpoint epoch across seeds, per cell and pooled."""
    n_boot = cfg["n_bootstrap"]
    out = {"budget": cfg["budgets"][0], "ablation": cfg["ablation"], **cfg["phase_shift"], "progress": "epoch",
           "fit": "continuous two-segment least squares vs one line; breakpoint searched over interior checkpoints",
           "curves": {}}
    for curve, part in table.groupby("curve", sort=True):
        found = part[part["phase_shift"]]
        n, m = len(part), len(found)
        per_seed = found.groupby("seed")["breakpoint_epoch"].median().to_dict()  # over cells, per seed
        cells = {}
        for cell, c in part.groupby(CELL, sort=True):
            hit = c[c["phase_shift"]]
            spread = _spread(dict(zip(hit["seed"], hit["breakpoint_epoch"])), n_boot,
                             _rng(seed, "phase_shift", curve, *cell))
            cells[cell_key(*cell)] = {"fits": len(c), "with_phase_shift": len(hit),
                                     "median_gain": _num(c["gain"].median()), "breakpoint_epoch": spread}
        if m == 0:
            verdict = (f"no phase shift found: in none of {n} fits does the two-segment fit reduce the SSE of one "
                       f"line by {cfg['phase_shift']['min_gain']:.0%} or more with null p <= "
                       f"{cfg['phase_shift']['alpha']:g}")
        elif m < n / 2:
            verdict = f"no consistent phase shift: found in {m} of {n} fits"
        else:
            verdict = (f"phase shift in {m} of {n} fits; median breakpoint at epoch "
                       f"{float(found['breakpoint_epoch'].median()):g}")
        out["curves"][curve] = {
            "fits": n, "with_phase_shift": m, "share": m / n if n else None, "verdict": verdict,
            "median_gain": _num(part["gain"].median()),
            "breakpoint_epoch_all_fits_median": float(found["breakpoint_epoch"].median()) if m else None,
            "breakpoint_epoch_across_seeds": {**_spread(per_seed, n_boot, _rng(seed, "phase_shift", curve)),
                                              "per_seed": {str(k): float(v) for k, v in per_seed.items()}},
            "cells": cells}
    return out


def _phase_shift(args, s: dict) -> None:
    cfg = _config(s)
    if len(args.topology) != len(args.hits):
        raise SystemExit("--topology and --hits must pair up (one of each per seed, same order)")
    topo, hits = [], {}
    for tp, hp in zip(args.topology, args.hits):
        t, h = pd.read_parquet(tp), pd.read_parquet(hp)
        seed = int(t["seed"].iloc[0])
        if "seed" in h.columns and set(h["seed"].astype(int)) != {seed}:
            raise SystemExit(f"{hp}: hits of seeds {sorted(set(h['seed']))}, paired with topology of seed {seed}")
        topo.append(t)
        hits[seed] = h
    table = phase_shift_table(pd.concat(topo, ignore_index=True), hits, cfg, s["seed"])
    prov = io.provenance("phase_shift", s["seed"], s)
    io.write_parquet(table, args.out_table, prov)
    io.write_json({**phase_shift_summary(table, cfg, s["seed"]), "provenance": prov}, args.out_json)


def depth_trend_table(topology: pd.DataFrame, cfg: dict, seed: int) -> pd.DataFrame:
    """Slope of mean_layer vs epoch: per seed x cell (scope 'seed'), per cell over seeds ('cell'), pooled
    over cells x seeds ('pooled', cell columns 'all'); every budget. Intervals: trends.bootstrap_slope."""
    from .trends import bootstrap_slope

    n_boot, rows = cfg["n_bootstrap"], []

    def add(scope, seed_value, cell, budget, curves):
        fit = bootstrap_slope(curves, n_boot, _rng(seed, "depth_trend", budget, scope, seed_value, *cell))
        rows.append({"scope": scope, "seed": seed_value, **dict(zip(CELL, cell)), "budget": budget, **fit})

    for budget in cfg["budgets"]:
        part = at_budget(topology, budget)
        curves = {key: (g["epoch"].to_numpy(), g["mean_layer"].to_numpy())
                  for key, g in part.groupby(["seed", *CELL], sort=True)}
        for (sd, *cell), curve in curves.items():
            add("seed", int(sd), cell, budget, [curve])
        for cell in sorted({tuple(k[1:]) for k in curves}):
            add("cell", None, cell, budget, [c for k, c in curves.items() if tuple(k[1:]) == cell])
        add("pooled", None, ("all", "all", "all"), budget, list(curves.values()))
    out = pd.DataFrame(rows)
    out["seed"] = out["seed"].astype("Int64")
    return out


def _depth_trend(args, s: dict) -> None:
    from .trends import trend_verdict

    cfg = _config(s)
    table = depth_trend_table(io.read_parquets(args.topology), cfg, s["seed"])
    summary = {"progress": "epoch", "units": "layers per epoch (negative = deep-to-shallow)",
               "layer_placement": "edge at its parent's layer; input embedding -1, heads/MLP of layer l at l",
               "weights": f"|edge score| ({s['circuits'].get('method', 'circuits.method')})",
               "n_bootstrap": cfg["n_bootstrap"], "headline_budget": cfg["budgets"][0],
               "interval": "95% two-level percentile bootstrap (curves = cells x seeds, then checkpoints)",
               "budgets": {}}

    def entry(r) -> dict:
        numbers = {k: _num(r[k]) for k in ("slope", "intercept", "ci_low", "ci_high")}
        return {**numbers, "n_curves": int(r["n_curves"]), "verdict": trend_verdict(r["ci_low"], r["ci_high"])}

    for budget, part in table.groupby("budget", sort=False):
        pooled = part[part["scope"] == "pooled"].iloc[0]
        summary["budgets"][budget] = {"pooled": entry(pooled), "cells": {
            cell_key(*(r[c] for c in CELL)): entry(r) for _, r in part[part["scope"] == "cell"].iterrows()}}
    summary["verdict"] = summary["budgets"][cfg["budgets"][0]]["pooled"]["verdict"]
    prov = io.provenance("depth_trend", s["seed"], s)
    io.write_parquet(table, args.out_table, prov)
    io.write_json({**summary, "provenance": prov}, args.out_json)


__all__ = ["add_parser", "run", "hit_curves", "phase_shift_table", "phase_shift_summary", "depth_trend_table"]
