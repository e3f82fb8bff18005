"""Knowledge interplay (Ou et al. 2025): training order and forgetting with replay, from the stream
runs' measurements (measure.py; one table per seed and run, concatenated).

Order: every ordered pair (A, B) of knowledge types has a run with all A facts before all B facts,
and one run sees the same sentences in random order. Tested on B's facts, paired per fact and seed:
A->B minus random. B's accuracy below the random run is *interference*, above it *synergy*.
- order_curves:   mean top-1 per run, step, knowledge type and frequency group;
- order_outcome:  per (A, B), metric (final top-1, AUC over steps) and frequency group: means, the
                  paired difference and its 95% seeded bootstrap interval (facts resampled within
                  each seed, seeds pooled), and the verdict;
- order_overlap:  Jaccard of B's circuits with A first against the random run's, step by step;
- order_finding / order_markdown: the summary and its findings.md section.

Forgetting: from the main study's last checkpoint (step 0), training on another corpus with a
share r of replay of the original one.
- forgetting_recall:   mean top-1 of the previously learned facts per run, step, type and group
                       (type and group "all" pooled), and its change from step 0;
- forgetting_circuits: Hit@k of their circuits and Jaccard to the circuit before forgetting;
- forgetting_finding / forgetting_markdown: the smallest replay share that keeps high-frequency
                       recall within a tolerance of its step-0 value at every checkpoint.

Pure pandas / numpy; every interval is seeded, so the same tables give the same numbers.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...stats import ALL, json_number, stage_rng, stratified_means, with_all
from ...vocabulary import CELL
from .streams import RANDOM, type_of_fact

FACT = ["entity_id", "type", "freq_group", "attribute"]
EDGE = ["parent", "child"]
ORDER_RUN = ["seed", "stream", "first", "second"]
FORGET_RUN = ["seed", "corpus", "replay"]
METRICS = ("final", "auc")
VERDICTS = ("interference", "synergy", "no difference")
ORDER_FINDING = "learning knowledge type A first changes how well type B is learned (interference or synergy)"
FORGETTING_FINDING = "replaying the original corpus keeps previously learned facts while training on other knowledge"


# ---- shared helpers ---------------------------------------------------------------------------------
def _knowledge(table: pd.DataFrame, types: dict, grouping: str, attribute: str = "attribute") -> pd.Series:
    """The knowledge type (streams.type_of_fact) of every row's (attribute, type); None: in no type."""
    keys = list(zip(table[attribute], table["type"]))
    lookup = {k: type_of_fact(types, grouping, *k) for k in set(keys)}
    return pd.Series([lookup[k] for k in keys], index=table.index, dtype=object)


def _current(accuracy: pd.DataFrame) -> pd.DataFrame:
    return accuracy[accuracy["target"] == "current"]


def _mean_top1(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean top1 and the number of rows (facts) per `keys` (missing keys, e.g. random's first, kept)."""
    grouped = frame.groupby(keys, sort=True, dropna=False)["top1"]
    return grouped.agg(top1="mean", n_facts="size").reset_index()


def _jaccard(cells: pd.DataFrame, left: pd.DataFrame, right: pd.DataFrame, on: list[str],
             extra: list[str]) -> pd.Series:
    """Jaccard of edge sets, for every row of `cells` (columns on + extra): the left circuit (edges
    with on + extra) against the right one (edges with on); NaN where both are empty."""
    keys = [*on, *extra]
    left, right = left[[*keys, *EDGE]].drop_duplicates(), right[[*on, *EDGE]].drop_duplicates()
    counts = [left.groupby(keys).size().rename("n_left"), right.groupby(on).size().rename("n_right"),
              left.merge(right, on=[*on, *EDGE]).groupby(keys).size().rename("shared")]
    out = cells[keys].reset_index(drop=True)
    for count in counts:
        frame = count.reset_index()
        frame = frame.astype({k: out[k].dtype for k in frame.columns if k in out.columns}) if len(frame) else None
        out[count.name] = (out.merge(frame, on=list(count.index.names), how="left")[count.name]
                           if frame is not None else np.nan)
    out = out.fillna({"n_left": 0, "n_right": 0, "shared": 0})
    union = out["n_left"] + out["n_right"] - out["shared"]
    return (out["shared"] / union.where(union > 0)).set_axis(cells.index)


# ---- order ------------------------------------------------------------------------------------------
def order_curves(accuracy: pd.DataFrame, types: dict, grouping: str) -> pd.DataFrame:
    """Mean top-1 of current-target facts per (seed, stream, first, second, step, knowledge,
    freq_group), freq_group ALL pooling the groups; facts in no knowledge type are dropped.
    -> those columns, top1, n_facts."""
    facts = _current(accuracy)
    facts = facts.assign(knowledge=_knowledge(facts, types, grouping)).dropna(subset=["knowledge"])
    keys = [*ORDER_RUN, "step", "knowledge", "freq_group"]
    return _mean_top1(with_all(facts, ["freq_group"]), keys)


def fact_scores(facts: pd.DataFrame) -> pd.DataFrame:
    """Per run and fact (ORDER_RUN + FACT): `final` = top1 at the run's last step and `auc` = area
    under top1 against step (trapezoid) over the run's span of steps (last - first, i.e. the last
    step from step 0): in [0, 1]; a run of one step has auc = its top1."""
    keys = [*ORDER_RUN, *FACT]
    facts = facts.groupby([*keys, "step"], dropna=False, sort=True)["top1"].mean().reset_index()
    run = facts.groupby(keys, dropna=False, sort=False).ngroup()  # rows sorted by run, then step
    same = run == run.shift()
    trapezoid = (facts["step"].diff() * (facts["top1"] + facts["top1"].shift()) / 2).where(same, 0.0)
    out = facts.assign(_run=run, _area=trapezoid).groupby("_run", sort=True).agg(
        **{k: (k, "first") for k in keys}, start=("step", "first"), end=("step", "last"), final=("top1", "last"),
        area=("_area", "sum"))
    span = (out["end"] - out["start"]).astype(float)
    out["auc"] = (out["area"] / span.where(span > 0)).fillna(out["final"])
    return out[[*keys, "final", "auc"]].reset_index(drop=True)


def _outcome_row(paired: pd.DataFrame, metric: str, n_bootstrap: int, rng: np.random.Generator) -> dict:
    """Means, paired difference and 95% intervals of one (pair, metric, group) block."""
    columns = np.stack([paired[metric], paired[f"{metric}_random"], paired[metric] - paired[f"{metric}_random"]],
                       axis=1).astype(float)  # [n, 3]: A->B, random, difference
    boot = stratified_means(columns, paired["seed"].to_numpy(), n_bootstrap, rng)
    (vl, rl, low), (vh, rh, high) = np.percentile(boot, [2.5, 97.5], axis=0)
    value, rand, diff = columns.mean(axis=0)
    verdict = VERDICTS[0] if high < 0 else VERDICTS[1] if low > 0 else VERDICTS[2]
    return {"value": value, "value_low": vl, "value_high": vh, "random": rand, "random_low": rl, "random_high": rh,
            "difference": diff, "low": low, "high": high,
            "n_facts": int(paired[["entity_id", "type", "attribute"]].drop_duplicates().shape[0]),
            "n_seeds": int(paired["seed"].nunique()), "verdict": verdict}


def _order_pairs(scores: pd.DataFrame, types: dict) -> list[tuple[str, str]]:
    """The ordered pairs (A, B) that have a run, in the types' order."""
    present = set(zip(scores["first"], scores["second"]))
    return [(a, b) for a in types for b in types if a != b and (a, b) in present]


def order_outcome(accuracy: pd.DataFrame, types: dict, grouping: str, n_bootstrap: int = 2000,
                  seed: int = 0) -> pd.DataFrame:
    """Per ordered pair (A, B): B's current-target facts after A-first training against the random
    order, paired per fact and seed (facts missing from either run are left out).

    -> columns first, second, metric ("final" / "auc", fact_scores), freq_group (ALL and each group),
    value (A->B mean) with value_low / value_high, random (random-order mean) with random_low /
    random_high, difference (A->B - random, mean of the paired differences), low / high (its 95%
    interval), n_facts, n_seeds, verdict ("interference": high < 0, "synergy": low > 0, else "no
    difference"). Intervals: percentile bootstrap of the means, facts resampled within each seed,
    seeds pooled; each block draws from a fresh generator seeded by (seed, crc32 of "order/A-B/metric"),
    so a block's interval does not depend on which others are present.
    """
    facts = _current(accuracy)
    facts = facts.assign(knowledge=_knowledge(facts, types, grouping)).dropna(subset=["knowledge"])
    scores = fact_scores(facts).merge(facts[FACT + ["knowledge"]].drop_duplicates(), on=FACT)
    random = scores[scores["stream"] == RANDOM].drop(columns=["stream", "first", "second"])
    rows = []
    for a, b in _order_pairs(scores, types):
        run = scores[(scores["first"] == a) & (scores["second"] == b) & (scores["knowledge"] == b)]
        paired = run.merge(random, on=["seed", *FACT, "knowledge"], suffixes=("", "_random"))
        groups = [ALL, *sorted(paired["freq_group"].unique())]
        for metric in METRICS:
            for group in groups:
                part = paired if group == ALL else paired[paired["freq_group"] == group]
                if len(part):
                    rng = stage_rng(seed, f"order/{a}-{b}/{metric}")
                    rows.append({"first": a, "second": b, "metric": metric, "freq_group": group,
                                 **_outcome_row(part, metric, n_bootstrap, rng)})
    columns = ["first", "second", "metric", "freq_group", "value", "value_low", "value_high", "random", "random_low",
               "random_high", "difference", "low", "high", "n_facts", "n_seeds", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def order_overlap(circuits: pd.DataFrame, hits: pd.DataFrame, types: dict, grouping: str) -> pd.DataFrame:
    """For every A->B run, step, edge budget and circuit cell of B (type_of_fact of (task, type)):
    the Jaccard of the circuit's edge set with the random run's circuit of the same cell, step,
    budget and seed (NaN: both empty; cells without a random-run circuit at that step are dropped),
    and both circuits' Hit@k under zero ablation (hit_at_k, random_hit_at_k).
    -> columns seed, first, second, step, budget, task, type, freq_group, jaccard, hit_at_k, random_hit_at_k."""
    on = ["seed", "step", "budget", *CELL]
    hits = hits.assign(budget=hits["budget"].astype(str))
    circuits = circuits.assign(budget=circuits["budget"].astype(str))
    zero = hits[hits["ablation"] == "zero"]
    cells = hits[["stream", "first", "second", *on]].drop_duplicates()
    cells = cells[(cells["stream"] != RANDOM) & (_knowledge(cells, types, grouping, "task") == cells["second"])]
    random_hits = zero[zero["stream"] == RANDOM][[*on, "hit_at_k"]].rename(columns={"hit_at_k": "random_hit_at_k"})
    cells = cells.merge(hits[hits["stream"] == RANDOM][on].drop_duplicates(), on=on)
    cells = cells.merge(zero[["stream", *on, "hit_at_k"]], on=["stream", *on], how="left")
    cells = cells.merge(random_hits, on=on, how="left")
    cells["jaccard"] = _jaccard(cells, circuits[circuits["stream"] != RANDOM], circuits[circuits["stream"] == RANDOM],
                                on, ["stream"])
    columns = ["seed", "first", "second", "step", "budget", *CELL, "jaccard", "hit_at_k", "random_hit_at_k"]
    return cells[columns].sort_values(columns[:8], kind="stable").reset_index(drop=True)


def _order_pair(outcome: pd.DataFrame, a: str, b: str) -> dict:
    """One pair's block of order_finding: per metric the pooled (freq_group ALL) numbers."""
    out = {"first": a, "second": b}
    for metric in METRICS:
        row = outcome[(outcome["first"] == a) & (outcome["second"] == b) & (outcome["metric"] == metric)
                      & (outcome["freq_group"] == ALL)]
        if len(row):
            r = row.iloc[0]
            out[metric] = {"value": json_number(r["value"]), "random": json_number(r["random"]),
                           "difference": json_number(r["difference"]),
                           "interval_95": [json_number(r["low"]), json_number(r["high"])], "verdict": r["verdict"],
                           "n_facts": int(r["n_facts"]), "n_seeds": int(r["n_seeds"])}
    return out


def order_finding(outcome: pd.DataFrame) -> dict:
    """JSON-able summary of order_outcome: per pair (pairs in table order) the pooled final and AUC
    differences with 95% intervals and verdicts, verdict counts per metric, and a statement (final)."""
    pairs = [_order_pair(outcome, a, b) for a, b in dict.fromkeys(zip(outcome["first"], outcome["second"]))]
    counts = {m: {v: sum(1 for p in pairs if m in p and p[m]["verdict"] == v) for v in VERDICTS} for m in METRICS}
    c = counts["final"]
    statement = (f"Of {len(pairs)} ordered pairs (A, B) of knowledge types, learning all of A before B leaves B's "
                 f"final top-1 accuracy below the random order (interference) for {c['interference']}, above it "
                 f"(synergy) for {c['synergy']} and indistinguishable from it for {c['no difference']} "
                 f"(95% bootstrap intervals of the paired difference).")
    return {"finding": ORDER_FINDING, "effect": "B's facts: A->B run minus random-order run, paired per fact and seed",
            "metrics": {"final": "top-1 at the run's last step", "auc": "area under top-1 against steps / last step"},
            "pairs": pairs, "counts": counts, "statement": statement}


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def _interval(block: dict | None) -> str:
    if block is None:
        return "n/a"
    low, high = block["interval_95"]
    return f"{_fmt(block['difference'])} [{_fmt(low)}, {_fmt(high)}]"


def order_markdown(finding: dict | None) -> list[str]:
    """The "Knowledge order" section of findings.md from order_finding's summary (None: not run)."""
    if finding is None:
        return ["## Knowledge order", "", "Not tested: no order summary was given.", ""]
    rows = [f"| {p['first']} → {p['second']} | {p.get('final', {}).get('value', 'n/a')} | "
            f"{p.get('final', {}).get('random', 'n/a')} | {_interval(p.get('final'))} | "
            f"{p.get('final', {}).get('verdict', 'n/a')} | {_interval(p.get('auc'))} | "
            f"{p.get('auc', {}).get('verdict', 'n/a')} |" for p in finding["pairs"]]
    return ["## Knowledge order", "", finding["statement"], "",
            "B's facts, A → B run minus the random order, paired per fact and seed; 95% seeded bootstrap "
            "intervals.", "",
            "| A → B | final top-1 (A → B) | final top-1 (random) | final difference [95%] | verdict | "
            "AUC difference [95%] | verdict (AUC) |", "|---|---|---|---|---|---|---|", *rows, ""]


# ---- forgetting -------------------------------------------------------------------------------------
def forgetting_recall(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Mean top-1 of current-target facts per (seed, corpus, replay, step, type, freq_group), with
    type ALL (types pooled) and freq_group ALL (groups pooled) rows; `drop` = top1 minus the same
    seed, corpus, replay, type and group's top1 at step 0 (negative: recall lost; NaN without step 0).
    -> those columns, top1, n_facts, drop."""
    keys = [*FORGET_RUN, "step", "type", "freq_group"]
    recall = _mean_top1(with_all(_current(accuracy), ["type", "freq_group"]), keys)
    start = recall[recall["step"] == 0].drop(columns=["step", "n_facts"]).rename(columns={"top1": "start"})
    recall = recall.merge(start, on=[k for k in keys if k != "step"], how="left")
    recall["drop"] = recall["top1"] - recall["start"]
    return recall.drop(columns="start")


def forgetting_circuits(circuits: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """Per (seed, corpus, replay, step, budget, task, type, freq_group): n_edges, hit_at_k (zero
    ablation), full_model_hit_at_k and `jaccard` of the circuit's edge set with the same cell's
    circuit at step 0 (before forgetting; NaN: both empty or no step 0)."""
    keys = [*FORGET_RUN, "step", "budget", *CELL]
    hits = hits.assign(budget=hits["budget"].astype(str))
    circuits = circuits.assign(budget=circuits["budget"].astype(str))
    zero = hits[hits["ablation"] == "zero"][[*keys, "n_edges", "hit_at_k", "full_model_hit_at_k"]]
    cells = hits[keys].drop_duplicates().merge(zero, on=keys, how="left")
    on = [k for k in keys if k != "step"]
    cells["jaccard"] = _jaccard(cells, circuits, circuits[circuits["step"] == 0], on, ["step"])
    return cells.sort_values(keys, kind="stable").reset_index(drop=True)


def _share_block(curve: pd.Series, share: float, tolerance: float) -> dict:
    """One replay share: curve = mean change from step 0 (over seeds) per step."""
    worst = curve.idxmin()
    return {"share": float(share), "within": bool(curve.min() >= -tolerance - 1e-12),
            "worst_drop": json_number(max(0.0, -float(curve.min()))), "worst_step": int(worst),
            "steps": int(len(curve))}


def _forgetting_statement(corpus: str, shares: list[dict], smallest, tolerance: float) -> str:
    points = f"{100 * tolerance:g} points"
    if smallest is None:
        best = min(shares, key=lambda s: s["worst_drop"])
        return (f"{corpus}: no replay share tested keeps high-frequency recall within {points} of its value before "
                f"forgetting at every checkpoint; the smallest worst drop is {best['worst_drop']:.3f} "
                f"(replay share {best['share']:g}).")
    head = shares[0]
    return (f"{corpus}: a replay share of {smallest:g} is the smallest tested that keeps high-frequency recall "
            f"within {points} of its value before forgetting at every checkpoint"
            + (f" (worst drop {next(s['worst_drop'] for s in shares if s['share'] == smallest):.3f}); with "
               f"share {head['share']:g} it drops by up to {head['worst_drop']:.3f}." if head["share"] != smallest
               else f" (worst drop {head['worst_drop']:.3f})."))


def forgetting_finding(recall: pd.DataFrame, tolerance: float = 0.05, group: str = "high") -> dict:
    """Per corpus and replay share: does recall of the `group` facts (types pooled: type ALL) stay
    within `tolerance` below its step-0 value at every checkpoint (mean over seeds of the change;
    a rise never counts against it)? worst_drop: the largest fall below the step-0 value
    (positive = recall lost) and its step. smallest_share: the smallest share that stays within
    (None if none); a one-sentence statement per corpus."""
    part = recall[(recall["type"] == ALL) & (recall["freq_group"] == group)].dropna(subset=["drop"])
    curves = part.groupby(["corpus", "replay", "step"], sort=True)["drop"].mean()
    corpora = {}
    for corpus in dict.fromkeys(part["corpus"]):
        shares = [_share_block(curves.loc[(corpus, share)], share, tolerance)
                  for share in sorted(part.loc[part["corpus"] == corpus, "replay"].unique())]
        smallest = next((s["share"] for s in shares if s["within"]), None)
        corpora[str(corpus)] = {"shares": shares, "smallest_share": smallest,
                                "statement": _forgetting_statement(str(corpus), shares, smallest, tolerance)}
    return {"finding": FORGETTING_FINDING, "tolerance": float(tolerance), "freq_group": group,
            "effect": "top-1 of previously learned facts (types pooled) minus its value at step 0, mean over seeds",
            "seeds": sorted(int(s) for s in part["seed"].unique()), "corpora": corpora}


def forgetting_markdown(finding: dict | None) -> list[str]:
    """The "Forgetting and replay" section of findings.md from forgetting_finding's summary."""
    if finding is None:
        return ["## Forgetting and replay", "", "Not tested: no forgetting summary was given.", ""]
    lines = ["## Forgetting and replay", "",
             f"Recall (top-1) of previously learned {finding['freq_group']}-frequency facts while training on other "
             f"knowledge with a share of replay; within = never more than {100 * finding['tolerance']:g} points below "
             f"its value before forgetting (mean over seeds {finding['seeds']}).", ""]
    for corpus, block in finding["corpora"].items():
        lines += [f"### {corpus}", "", block["statement"], "", "| replay share | worst drop | at step | within? |",
                  "|---|---|---|---|",
                  *[f"| {s['share']:g} | {s['worst_drop']:.3f} | {s['worst_step']} | {'yes' if s['within'] else 'no'} |"
                    for s in block["shares"]], ""]
    return lines


__all__ = ["order_curves", "fact_scores", "order_outcome", "order_overlap", "order_finding", "order_markdown",
           "forgetting_recall", "forgetting_circuits", "forgetting_finding", "forgetting_markdown"]
