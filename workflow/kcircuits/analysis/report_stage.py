"""`kcircuits results ACTION`: the tidy table across seeds and checkpoints, and the findings summary.

    table     every per-seed summary -> results/{run}/analysis/table.parquet (analysis/aggregate.py)
    findings  evaluation + phase-shift + depth-trend summaries (+ knowledge-neuron interventions)
              -> findings.json + findings.md; findings.json keys: relevance, phase_shift,
              deep_to_shallow, knowledge_neurons (analysis.findings.neuron_finding; null without
              --neuron-interventions), provenance; and, for every findings key of a study
              (kcircuits.studies: Study.findings) whose summary.json is given as --KEY, that key and
              the study's findings.md section
"""
from __future__ import annotations

import json
import logging

import pandas as pd

from .. import io
from ..settings import actions, add_paths, command, run_handler
from ..studies import STUDIES

log = logging.getLogger("kcircuits.results")


def study_findings() -> dict:
    """findings key -> (study, "module:function" of its findings.md section), every study's in turn."""
    return {key: (study, spec) for study in STUDIES.values() for key, spec in study.findings.items()}


def add_parser(subparsers) -> None:
    acts = actions(subparsers, "results", "the tidy table across seeds and checkpoints; findings summary",
                   run, __doc__.split("\n")[0])
    a = command(acts, "table", "every per-seed summary in one tidy table", "analysis", _table)
    add_paths(a, "eval", "stats", "hits", many=True)
    add_paths(a, "transplants", "topology", "roles", "lens", many=True, required=False)
    add_paths(a, "neuron_evolution", "neuron_overlap", "neuron_interventions", many=True, required=False)
    add_paths(a, "out")
    a = command(acts, "findings", "findings.json and findings.md", "analysis", _findings)
    add_paths(a, "entity_evals", many=True)
    add_paths(a, "neuron_interventions", many=True, required=False)
    add_paths(a, "phase_shift", "depth_trend", "out_json", "out_md")
    add_paths(a, *study_findings(), required=False)


def run(args) -> None:
    run_handler(args)


def _read(paths) -> list[pd.DataFrame]:
    return [pd.read_parquet(p) for p in paths or []]


def _table(args, s: dict) -> None:
    from .aggregate import tidy_table

    table = tidy_table(_read(args.eval), _read(args.stats), _read(args.hits), _read(args.transplants),
                       _read(args.topology), _read(args.roles), _read(args.lens),
                       tasks=list(s["circuit_pairs"]["tasks"]), hit_k=s["circuits"]["hit_k"],
                       neuron_evolution=_read(args.neuron_evolution), neuron_overlap=_read(args.neuron_overlap),
                       neuron_interventions=_read(args.neuron_interventions))
    io.write_parquet(table, args.out, io.provenance("results_table", s["seed"], s))
    log.info("table: %d rows x %d columns", *table.shape)


def _findings(args, s: dict) -> None:
    from .findings import neuron_finding, relevance_finding

    boot = s["analysis"]["topology"]["n_bootstrap"]
    with open(args.phase_shift, encoding="utf-8") as fh:
        phase = json.load(fh)
    with open(args.depth_trend, encoding="utf-8") as fh:
        depth = json.load(fh)
    summary = {
        "relevance": relevance_finding(_read(args.entity_evals), n_bootstrap=boot, seed=s["seed"]),
        "phase_shift": phase_shift_finding(phase),
        "deep_to_shallow": depth_finding(depth),
        "knowledge_neurons": (neuron_finding(_read(args.neuron_interventions), n_bootstrap=boot, seed=s["seed"])
                              if args.neuron_interventions else None),
        "provenance": io.provenance("findings", s["seed"], s),
    }
    for key in study_findings():  # only when its summary is given
        if getattr(args, key, None):
            with open(getattr(args, key), encoding="utf-8") as fh:
                summary[key] = json.load(fh)
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


def _stat(stat: dict) -> str:
    """'mean [low, high]' of a neuron_finding statistic."""
    low, high = stat["interval_95"]
    return "n/a" if stat["mean"] is None else f"{_fmt(stat['mean'])} [{_fmt(low)}, {_fmt(high)}]"


def _neuron_row(kn: dict | None) -> list[str]:
    if kn is None:
        return []
    sup = kn["suppress"]
    return [f"| KN | {kn['finding']} (Dai et al. 2022) | {'yes' if kn['holds'] else 'no'} | IG, suppressed, relative "
            f"change of P: own − random neurons {_stat(sup['own_minus_random'])}, own − unrelated prompts "
            f"{_stat(sup['own_minus_unrelated'])}, {sup['n_facts']} facts |"]


def neuron_markdown(kn: dict | None) -> list[str]:
    """The "Knowledge neurons" section of findings.md from neuron_finding's summary (None: not run)."""
    if kn is None:
        return ["## Knowledge neurons", "", "Not tested: no knowledge-neuron interventions were given.", ""]
    at = ", ".join(f"seed {s}: {c}" for s, c in kn["checkpoints"].items())
    rows = [("IG", "suppress ×0", kn["suppress"]), ("IG", "amplify ×2", kn["amplify"]),
            ("baseline", "suppress ×0", kn["baseline"]["suppress"]),
            ("baseline", "amplify ×2", kn["baseline"]["amplify"])]
    return [
        "## Knowledge neurons", "",
        f"At each training seed's last checkpoint ({at}): relative change of P(value) when a fact's knowledge neurons "
        f"are suppressed (×0) or amplified (×2), on its own prompts, against as many random neurons of the same "
        f"layers (own prompts) and against another attribute's fact's prompts; mean over facts, contrasts paired per "
        f"fact. {kn['facts_without_neurons']} IG facts without knowledge neurons are left out.", "",
        f"Verdict: {kn['verdict']}.", "",
        "| method | intervention | facts | own prompts | random neurons | unrelated prompts | own − random | "
        "own − unrelated | holds? |", "|---|---|---|---|---|---|---|---|---|",
        *[f"| {m} | {op} | {b['n_facts']} | {_stat(b['own'])} | {_stat(b['random'])} | {_stat(b['unrelated'])} | "
          f"{_stat(b['own_minus_random'])} | {_stat(b['own_minus_unrelated'])} | {'yes' if b['holds'] else 'no'} |"
          for m, op, b in rows],
        "", "Per frequency group (IG):", "",
        "| frequency group | facts | suppressed: own | own − random | own − unrelated | holds? | amplified: own |",
        "|---|---|---|---|---|---|---|",
        *[f"| {g} | {b['suppress']['n_facts']} | {_stat(b['suppress']['own'])} | "
          f"{_stat(b['suppress']['own_minus_random'])} | {_stat(b['suppress']['own_minus_unrelated'])} | "
          f"{'yes' if b['suppress']['holds'] else 'no'} | {_stat(b['amplify']['own']) if 'amplify' in b else 'n/a'} |"
          for g, b in kn["per_group"].items() if "suppress" in b],
        "",
    ]


def findings_markdown(summary: dict) -> str:
    rel, ph, dp = summary["relevance"], summary["phase_shift"], summary["deep_to_shallow"]
    kn = summary.get("knowledge_neurons")
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
        *_neuron_row(kn),
        "", "## 1. Relevance", "", f"Verdict: {rel['verdict']}.", "",
        "| frequency group | AUC new | AUC revised | difference |", "|---|---|---|---|",
        *[f"| {g} | {v['new']:.3f} | {v['revised']:.3f} | {v['difference']:+.3f} |"
          for g, v in rel["per_group"].items()],
        "", f"Entities per type: {rel['entities']}.", "",
        "## 2. Phase shift", "", *[f"- {name}: {c['verdict']}" for name, c in ph["curves"].items()], "",
        "## 3. Deep-to-shallow", "", f"Verdict: {dp['verdict']} (edge budget {dp['budget']}).", "",
        *neuron_markdown(kn),
    ]
    for key, (study, markdown) in study_findings().items():
        if key in summary:
            lines += study.function(markdown)(summary[key])
    return "\n".join(lines)
