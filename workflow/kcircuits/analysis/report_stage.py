"""`kcircuits results ACTION`: the tidy table across seeds and checkpoints, and the findings summary.

    table     every per-seed summary -> results/{run}/analysis/table.parquet (analysis/aggregate.py)
    findings  evaluation + phase-shift + depth-trend summaries -> findings.json + findings.md
"""
from __future__ import annotations

import json
import logging

import pandas as pd

from .. import io
from ..settings import actions, add_paths, command, run_handler

log = logging.getLogger("kcircuits.results")


def add_parser(subparsers) -> None:
    acts = actions(subparsers, "results", "the tidy table across seeds and checkpoints; findings summary",
                   run, __doc__.split("\n")[0])
    a = command(acts, "table", "every per-seed summary in one tidy table", "analysis", _table)
    add_paths(a, "eval", "stats", "hits", many=True)
    add_paths(a, "transplants", "topology", "roles", "lens", many=True, required=False)
    add_paths(a, "out")
    a = command(acts, "findings", "findings.json and findings.md", "analysis", _findings)
    add_paths(a, "entity_evals", many=True)
    add_paths(a, "phase_shift", "depth_trend", "out_json", "out_md")


def run(args) -> None:
    run_handler(args)


def _read(paths) -> list[pd.DataFrame]:
    return [pd.read_parquet(p) for p in paths or []]


def _table(args, s: dict) -> None:
    from .aggregate import tidy_table

    table = tidy_table(_read(args.eval), _read(args.stats), _read(args.hits), _read(args.transplants),
                       _read(args.topology), _read(args.roles), _read(args.lens),
                       tasks=list(s["circuit_pairs"]["tasks"]), hit_k=s["circuits"]["hit_k"])
    io.write_parquet(table, args.out, io.provenance("results_table", s["seed"], s))
    log.info("table: %d rows x %d columns", *table.shape)


def _findings(args, s: dict) -> None:
    from .findings import relevance_finding

    boot = s["analysis"]["topology"]["n_bootstrap"]
    with open(args.phase_shift, encoding="utf-8") as fh:
        phase = json.load(fh)
    with open(args.depth_trend, encoding="utf-8") as fh:
        depth = json.load(fh)
    summary = {
        "relevance": relevance_finding(_read(args.entity_evals), n_bootstrap=boot, seed=s["seed"]),
        "phase_shift": phase_shift_finding(phase),
        "deep_to_shallow": depth_finding(depth),
        "provenance": io.provenance("findings", s["seed"], s),
    }
    io.write_json(summary, args.out_json)
    with io.atomic_path(args.out_md) as tmp:
        tmp.write_text(findings_markdown(summary), encoding="utf-8")


def phase_shift_finding(phase: dict) -> dict:
    """Finding 2 from the topology stage's phase_shift.json: holds when most fits of both curves
    find a two-segment change point."""
    curves = {name: {k: c[k] for k in ("fits", "with_phase_shift", "verdict")} |
              {"breakpoint_epoch": c["breakpoint_epoch_across_seeds"]} for name, c in phase["curves"].items()}
    holds = bool(curves) and all(c["with_phase_shift"] >= c["fits"] / 2 and c["fits"] > 0 for c in curves.values())
    return {"finding": "circuits show a phase shift from formation to optimisation", "holds": holds,
            "verdict": "holds" if holds else "not supported", "budget": phase.get("budget"), "curves": curves}


def depth_finding(depth: dict) -> dict:
    """Finding 3 from depth_trend.json: holds when the pooled slope's 95% interval lies below 0."""
    pooled = depth["budgets"][depth["headline_budget"]]["pooled"]
    holds = pooled["ci_high"] is not None and pooled["ci_high"] < 0
    return {"finding": "circuit evolution goes deep-to-shallow", "holds": bool(holds), "verdict": pooled["verdict"],
            "budget": depth["headline_budget"], "units": depth["units"], "slope": pooled["slope"],
            "interval_95": [pooled["ci_low"], pooled["ci_high"]], "n_curves": pooled["n_curves"]}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def findings_markdown(summary: dict) -> str:
    rel, ph, dp = summary["relevance"], summary["phase_shift"], summary["deep_to_shallow"]
    seeds = ", ".join(str(s) for s in rel["seeds"])
    lines = [
        "# Findings of this run", "",
        f"Training seeds {seeds}; every interval is a 95% seeded bootstrap. Each finding of the original study "
        "(Ou et al. 2025) is stated with the numbers that decide it, whichever way they point.", "",
        "| # | finding | holds here? | numbers |", "|---|---|---|---|",
        f"| 1 | {rel['finding']} | {'yes' if rel['holds'] else 'no'} | AUC of {rel['metric']} over continual "
        f"checkpoints, revised − new = {_fmt(rel['difference'])} [{_fmt(rel['interval_95'][0])}, "
        f"{_fmt(rel['interval_95'][1])}] |",
        f"| 2 | {ph['finding']} | {'yes' if ph['holds'] else 'no'} | " + "; ".join(
            f"{name}: {c['with_phase_shift']}/{c['fits']} fits, breakpoint epoch median "
            f"{c['breakpoint_epoch'].get('median', 'n/a')}" for name, c in ph["curves"].items()) + " |",
        f"| 3 | {dp['finding']} | {'yes' if dp['holds'] else 'no'} | mean-layer slope {_fmt(dp['slope'])} "
        f"{dp['units']} [{_fmt(dp['interval_95'][0])}, {_fmt(dp['interval_95'][1])}], {dp['n_curves']} curves |",
        "", "## 1. Relevance", "", f"Verdict: {rel['verdict']}.", "",
        "| frequency group | AUC new | AUC revised | difference |", "|---|---|---|---|",
        *[f"| {g} | {v['new']:.3f} | {v['revised']:.3f} | {v['difference']:+.3f} |" for g, v in rel["per_group"].items()],
        "", f"Entities per type: {rel['entities']}.", "",
        "## 2. Phase shift", "", *[f"- {name}: {c['verdict']}" for name, c in ph["curves"].items()], "",
        "## 3. Deep-to-shallow", "", f"Verdict: {dp['verdict']} (edge budget {dp['budget']}).", "",
    ]
    return "\n".join(lines)
