"""RECKONING (Chen et al., NeurIPS 2023): the evaluation job's tables (evaluate.py;
one per seed and method, concatenated) summarised, and the headline test.

- reckoning_accuracy:   exact-match accuracy and first-token top-1 per method, hop count and distractor
                        count at the trained number of inner steps (at_trained_steps), with 95% intervals;
- reckoning_steps:      the same for the ENCODED methods against the inner steps used at test time;
- reckoning_recitation: exact match of the facts regenerated under theta' per method, distractor count,
                        inner steps and kind of fact;
- reckoning_timing:     seconds to answer k questions about one context, encode once vs in context;
- reckoning_finding / reckoning_markdown: RECKONING against FT-ICR with distractors, paired per question,
                        and its findings.md section (with the subsection "Circuits of theta'" when the
                        finding holds reckoning_circuit_finding's dict under "circuits";
                        circuit_summary.py).

Rows pooled over hop counts have hops == ALL_HOPS (0; the column stays integer), rows pooled over
kinds of fact kind == ALL. Intervals: percentile bootstrap of the means, rows (questions, facts)
resampled within each training seed, seeds pooled (kcircuits.stats.stratified_means); every block draws
from a fresh generator seeded by (seed, crc32 of the block's name), so the same tables give the same
numbers whatever else they hold.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ...stats import ALL, json_number, stage_rng, stratified_means, with_all
from . import ENCODED, METHODS
from .circuit_summary import reckoning_circuit_finding, reckoning_circuit_markdown

ALL_HOPS = 0  # hops of the rows pooled over one- and two-hop questions
BASELINE = "ft_icr"
PREFERRED = ("reckoning_mt", "reckoning")  # the encoded method the finding tests, first present
# one question about one context (the pairing of the finding; distractors and hops follow from it)
QUESTION = ["seed", "context_id", "entity_id", "distractors", "attribute", "hops"]
FACT = ["seed", "context_id", "entity_id", "position"]  # one fact of one context (recitation)
ANSWER_KEYS = ["method", "hops", "distractors", "steps"]
ANSWER_COLUMNS = [*ANSWER_KEYS, "accuracy", "accuracy_low", "accuracy_high", "top1", "top1_low", "top1_high",
                  "n_questions", "n_seeds"]
RECITATION_KEYS = ["method", "distractors", "steps", "kind"]
RECITATION_COLUMNS = [*RECITATION_KEYS, "exact", "exact_low", "exact_high", "n_facts", "n_seeds"]
TIMING_KEYS = ["method", "mode", "questions"]
TIMING_COLUMNS = [*TIMING_KEYS, "seconds", "seconds_per_question", "n_runs", "n_seeds"]
VERDICTS = ("RECKONING beats FT-ICR", "FT-ICR beats RECKONING", "no difference")
UNTESTED = "cannot be tested"
RECKONING_FINDING = ("with distractors in the context, answering from weights the inner loop wrote (RECKONING) "
                     "is more accurate than fine-tuning with the facts in context (FT-ICR)")
# the original's numbers (ProofWriter, Chen et al. 2023), for reference
ORIGINAL = {"dataset": "ProofWriter", "label_accuracy_with_distractors": {"reckoning": 0.825, "ft_icr": 0.709},
            "recitation_exact_match": {"reckoning_mt_without_distractors": 0.993,
                                       "reckoning_mt_with_distractors": 0.736, "ft_icr_with_distractors": 0.494}}


# ---- shared helpers ---------------------------------------------------------------------------------
def method_order(present) -> list[str]:
    """The methods in `present`: METHODS' order first, then any others (e.g. base) sorted."""
    present = set(present)
    return [m for m in METHODS if m in present] + sorted(present - set(METHODS))


def at_trained_steps(frame: pd.DataFrame, steps: int) -> pd.DataFrame:
    """The rows answered as trained: ENCODED methods after `steps` (N) inner steps, the others at steps 0."""
    encoded = frame["method"].isin(ENCODED)
    return frame[(encoded & (frame["steps"] == steps)) | (~encoded & (frame["steps"] == 0))]


def _with_all_hops(answers: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([answers, answers.assign(hops=ALL_HOPS)], ignore_index=True)


def _scored(answers: pd.DataFrame) -> pd.DataFrame:
    """answers with accuracy (exact, 0/1) and top1 (first_rank == 1, 0/1) as floats."""
    return answers.assign(accuracy=answers["exact"].astype(float), top1=(answers["first_rank"] == 1).astype(float))


def _rng(seed: int, name: str) -> np.random.Generator:
    return stage_rng(seed, f"reckoning/{name}")


def _means(part: pd.DataFrame, columns: list[str], n_bootstrap: int, rng: np.random.Generator) -> dict:
    """Mean of each column and its 95% interval (rows resampled within seeds, columns drawn together)."""
    values = part[columns].to_numpy(dtype=float)  # [n, k]
    boot = stratified_means(values, part["seed"].to_numpy(), n_bootstrap, rng)
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    out = {}
    for j, column in enumerate(columns):
        out |= {column: float(values[:, j].mean()), f"{column}_low": float(low[j]), f"{column}_high": float(high[j])}
    return out


def _cells(frame: pd.DataFrame, keys: list[str], within: list[str], columns: list[str], label: str, count: str,
           n_bootstrap: int, seed: int) -> list[dict]:
    """One row per `keys` cell (methods in method_order, the other keys sorted): _means of `columns`
    over the cell's rows (sorted by `within`: the rows' order does not matter), their number as
    `count` and n_seeds."""
    rank = {m: i for i, m in enumerate(method_order(frame["method"]))}
    frame = frame.assign(_rank=frame["method"].map(rank)).sort_values(["_rank", *keys, *within], kind="stable")
    rows = []
    for key, part in frame.groupby(["_rank", *keys], sort=True):
        cell = dict(zip(keys, key[1:]))
        rng = _rng(seed, f"{label}/" + "/".join(str(cell[k]) for k in keys))
        rows.append({**cell, **_means(part, columns, n_bootstrap, rng), count: int(len(part)),
                     "n_seeds": int(part["seed"].nunique())})
    return rows


def _answer_table(answers: pd.DataFrame, label: str, n_bootstrap: int, seed: int) -> pd.DataFrame:
    scored = _with_all_hops(_scored(answers))
    rows = _cells(scored, ANSWER_KEYS, QUESTION, ["accuracy", "top1"], label, "n_questions", n_bootstrap, seed)
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


# ---- tables -----------------------------------------------------------------------------------------
def reckoning_accuracy(answers: pd.DataFrame, steps: int, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per method, hops (1, 2 and ALL_HOPS: pooled) and distractor count, the questions answered as
    trained (at_trained_steps with N = `steps`): accuracy (exact match of the greedy answer), top1
    (the answer's first token ranked first), each with _low / _high (95% interval), n_questions,
    n_seeds. -> ANSWER_COLUMNS; `steps` is the inner steps the cell was answered with (N or 0)."""
    return _answer_table(at_trained_steps(answers, steps), "accuracy", n_bootstrap, seed)


def reckoning_steps(answers: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The ENCODED methods' accuracy against the inner steps used at test time: per method, hops
    (ALL_HOPS: pooled), distractor count and steps. -> ANSWER_COLUMNS, as reckoning_accuracy."""
    return _answer_table(answers[answers["method"].isin(ENCODED)], "steps", n_bootstrap, seed)


def reckoning_recitation(recitation: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Exact match of the regenerated facts per method (any name, e.g. base), distractor count, inner
    steps and kind of fact (kind ALL: pooled). -> RECITATION_COLUMNS: exact with exact_low /
    exact_high (95% interval, facts resampled within seeds), n_facts, n_seeds."""
    pooled = with_all(recitation.assign(exact=recitation["exact"].astype(float)), ["kind"])
    rows = _cells(pooled, RECITATION_KEYS, FACT, ["exact"], "recitation", "n_facts", n_bootstrap, seed)
    return pd.DataFrame(rows, columns=RECITATION_COLUMNS)


def reckoning_timing(timing: pd.DataFrame) -> pd.DataFrame:
    """Seconds to answer k questions about one context per method, mode and k: the mean over seeds of
    each seed's mean, and that over k (seconds_per_question); n_runs (rows), n_seeds.
    -> TIMING_COLUMNS, methods in method_order."""
    per_seed = timing.groupby([*TIMING_KEYS, "seed"], sort=True)["seconds"].agg(["mean", "size"]).reset_index()
    out = per_seed.groupby(TIMING_KEYS, sort=True).agg(seconds=("mean", "mean"), n_runs=("size", "sum"),
                                                        n_seeds=("seed", "nunique")).reset_index()
    out["seconds_per_question"] = out["seconds"] / out["questions"]
    rank = {m: i for i, m in enumerate(method_order(out["method"]))}
    out = out.sort_values(TIMING_KEYS, key=lambda c: c.map(rank) if c.name == "method" else c, kind="stable")
    return out[TIMING_COLUMNS].astype({"n_runs": int, "n_seeds": int}).reset_index(drop=True)


# ---- finding ----------------------------------------------------------------------------------------
def _interval_block(m: dict, column: str) -> dict:
    interval = [json_number(m[f"{column}_low"]), json_number(m[f"{column}_high"])]
    return {"mean": json_number(m[column]), "interval_95": interval}


def _paired(answers: pd.DataFrame, method: str) -> pd.DataFrame:
    """Questions both `method` and BASELINE answered: QUESTION, value (method's accuracy), baseline
    (BASELINE's) and difference, sorted by QUESTION (the bootstrap does not depend on the rows' order)."""
    per = _scored(answers).groupby(["method", *QUESTION], sort=True)["accuracy"].mean().reset_index()
    mine = per[per["method"] == method].drop(columns="method").rename(columns={"accuracy": "value"})
    base = per[per["method"] == BASELINE].drop(columns="method").rename(columns={"accuracy": "baseline"})
    paired = mine.merge(base, on=QUESTION).sort_values(QUESTION, kind="stable").reset_index(drop=True)
    return paired.assign(difference=paired["value"] - paired["baseline"])


def _comparison(paired: pd.DataFrame, label: str, n_bootstrap: int, seed: int) -> dict | None:
    """One comparison (method - BASELINE, paired per question) with its verdict; None without questions."""
    if paired.empty:
        return None
    m = _means(paired, ["value", "baseline", "difference"], n_bootstrap, _rng(seed, f"finding/{label}"))
    low, high = m["difference_low"], m["difference_high"]
    return {"value": _interval_block(m, "value"), "baseline": _interval_block(m, "baseline"),
            "difference": json_number(m["difference"]), "interval_95": [json_number(low), json_number(high)],
            "verdict": VERDICTS[0] if low > 0 else VERDICTS[1] if high < 0 else VERDICTS[2],
            "distractors": sorted(int(d) for d in paired["distractors"].unique()),
            "n_questions": int(len(paired)), "n_seeds": int(paired["seed"].nunique())}


def _method_accuracy(answers: pd.DataFrame, n_bootstrap: int, seed: int) -> dict:
    """Per method (method_order): accuracy with and without distractors (hops pooled), each with its
    95% interval and n_questions (None where the method has no such question)."""
    scored = _scored(answers).sort_values(QUESTION, kind="stable")
    out = {}
    for method in method_order(scored["method"]):
        mine = scored[scored["method"] == method]
        out[method] = {}
        for name, part in (("with_distractors", mine[mine["distractors"] > 0]),
                           ("without_distractors", mine[mine["distractors"] == 0])):
            m = _means(part, ["accuracy"], n_bootstrap, _rng(seed, f"finding/{method}/{name}")) if len(part) else None
            out[method][name] = (None if m is None else
                                 {**_interval_block(m, "accuracy"), "n_questions": int(len(part))})
    return out


def _statement(method: str | None, blocks: dict, reason: str | None) -> str:
    if reason:
        return f"Not tested: {reason}."
    parts = []
    for name, label in (("with_distractors", "With distractors"), ("without_distractors", "Without distractors")):
        b = blocks[name]
        if b is None:
            parts.append(f"{label}: no question answered by both.")
            continue
        low, high = b["interval_95"]
        parts.append(f"{label}, {method} answers {b['value']['mean']:.3f} of the questions exactly and FT-ICR "
                     f"{b['baseline']['mean']:.3f}: a difference of {b['difference']:+.3f} [{low:+.3f}, {high:+.3f}] "
                     f"over {b['n_questions']} paired questions and {b['n_seeds']} seed(s), so {b['verdict']}.")
    return " ".join(parts)


def reckoning_finding(answers: pd.DataFrame, steps: int, n_bootstrap: int = 2000, seed: int = 0) -> dict:
    """The headline: accuracy of the encoded method (the first of PREFERRED that was run) minus FT-ICR's,
    on the same questions (QUESTION: seed, context, entity, attribute; hops pooled) answered as trained
    (at_trained_steps), with distractors (distractors > 0, pooled) and without (0). The verdict (with
    distractors) follows the 95% interval of the mean paired difference: above 0 "RECKONING beats
    FT-ICR", below 0 "FT-ICR beats RECKONING", else "no difference"; "cannot be tested" when FT-ICR or
    every encoded method is missing, or no question is shared.

    -> {finding, method, baseline, steps, testable, reason, verdict, effect, with_distractors,
        without_distractors (each None or {value, baseline: {mean, interval_95}, difference,
        interval_95, verdict, distractors, n_questions, n_seeds}), accuracy {method: {with_distractors,
        without_distractors}}, original, seeds, n_bootstrap, statement}."""
    answers = at_trained_steps(answers, steps)
    present = set(answers["method"])
    method = next((m for m in PREFERRED if m in present), None)
    missing = [name for name, ok in (("FT-ICR (ft_icr)", BASELINE in present),
                                     ("an encoded method (reckoning_mt or reckoning)", method is not None)) if not ok]
    reason = f"no answers of {' and '.join(missing)}" if missing else None
    blocks = {"with_distractors": None, "without_distractors": None}
    if reason is None:
        paired = _paired(answers, method)
        blocks = {"with_distractors": _comparison(paired[paired["distractors"] > 0], "with", n_bootstrap, seed),
                  "without_distractors": _comparison(paired[paired["distractors"] == 0], "without", n_bootstrap, seed)}
        if blocks["with_distractors"] is None:
            reason = f"{method} and FT-ICR share no question with distractors"
    return {"finding": RECKONING_FINDING, "method": method, "baseline": BASELINE, "steps": int(steps),
            "testable": reason is None, "reason": reason,
            "verdict": UNTESTED if reason else blocks["with_distractors"]["verdict"],
            "effect": "exact-match accuracy, encoded method minus FT-ICR, paired per question and seed (hops pooled)",
            **blocks, "accuracy": _method_accuracy(answers, n_bootstrap, seed), "original": ORIGINAL,
            "seeds": sorted(int(s) for s in answers["seed"].unique()), "n_bootstrap": int(n_bootstrap),
            "statement": _statement(method, blocks, reason if missing else None)}


def _cell(block: dict | None) -> str:
    if block is None:
        return "n/a"
    low, high = block["interval_95"]
    return f"{block['mean']:.3f} [{low:.3f}, {high:.3f}]"


def _comparison_row(label: str, b: dict | None) -> str:
    if b is None:
        return f"| {label} | n/a | n/a | n/a | n/a | {UNTESTED} | 0 |"
    low, high = b["interval_95"]
    return (f"| {label} | {', '.join(map(str, b['distractors']))} | {_cell(b['value'])} | {_cell(b['baseline'])} | "
            f"{b['difference']:+.3f} [{low:+.3f}, {high:+.3f}] | {b['verdict']} | {b['n_questions']} |")


def reckoning_markdown(finding: dict | None) -> list[str]:
    """The "RECKONING" section of findings.md from reckoning_finding's summary (None: not run); with a
    "circuits" key (reckoning_circuit_finding), also its "### Circuits of theta'" subsection."""
    if finding is None:
        return ["## RECKONING", "", "Not tested: no RECKONING summary was given.", ""]
    o = finding["original"]
    acc, rec = o["label_accuracy_with_distractors"], o["recitation_exact_match"]
    original = (f"The original ({o['dataset']}): with distractors RECKONING {100 * acc['reckoning']:.1f}% against "
                f"FT-ICR {100 * acc['ft_icr']:.1f}% label accuracy; RECKONING-MT recites the relevant facts at "
                f"{100 * rec['reckoning_mt_without_distractors']:.1f}% exact match without distractors, "
                f"{100 * rec['reckoning_mt_with_distractors']:.1f}% with (FT-ICR "
                f"{100 * rec['ft_icr_with_distractors']:.1f}%).")
    lines = ["## RECKONING", "", finding["statement"], "", f"Verdict: {finding['verdict']}.", ""]
    if finding["with_distractors"] is not None or finding["without_distractors"] is not None:
        lines += [f"Exact-match accuracy of {finding['method']} after {finding['steps']} inner steps against FT-ICR "
                  "(the facts in context), paired per question and seed, hop counts pooled; 95% seeded bootstrap "
                  "intervals.", "",
                  f"| questions | distractors | {finding['method']} | FT-ICR | difference [95%] | verdict | paired |",
                  "|---|---|---|---|---|---|---|",
                  _comparison_row("with distractors", finding["with_distractors"]),
                  _comparison_row("without distractors", finding["without_distractors"]), ""]
    lines += ["| method | accuracy without distractors [95%] | accuracy with distractors [95%] |", "|---|---|---|",
              *[f"| {m} | {_cell(a['without_distractors'])} | {_cell(a['with_distractors'])} |"
                for m, a in finding["accuracy"].items()], "", original, ""]
    return lines + (reckoning_circuit_markdown(finding["circuits"]) if "circuits" in finding else [])


__all__ = ["ALL", "ALL_HOPS", "method_order", "at_trained_steps", "reckoning_accuracy", "reckoning_steps",
           "reckoning_recitation", "reckoning_timing", "reckoning_finding", "reckoning_markdown",
           "reckoning_circuit_finding"]
