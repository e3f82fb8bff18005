"""RECKONING summaries (kcircuits.studies.reckoning.summary), their figures and findings section, on hand-made
evaluation tables whose answers are known: which questions each method gets right is fixed by the
context's number, so every accuracy, difference and verdict below is computed by hand."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import assert_figure_drawn_twice_alike
from kcircuits.figures.stage import all_figures
from kcircuits.studies.reckoning import summary as rk

FIGURES = all_figures()

N = 4  # trained inner steps
CONTEXTS = 10
METHODS = ["reckoning", "reckoning_mt", "ft_icr", "no_facts", "random_facts"]
QUESTIONS = [("city", 1), ("headquarters", 2)]
# (method, distractors) -> contexts 0..9 answered right at the trained steps (both hop counts unless noted)
RIGHT = {("reckoning_mt", 4): range(0, 9), ("ft_icr", 4): range(0, 5),  # 0.9 vs 0.5: +0.4
         ("reckoning_mt", 0): range(0, 7), ("ft_icr", 0): range(3, 10),  # 0.7 each, other questions: a wash
         ("reckoning", 4): range(0, 8), ("reckoning", 0): range(0, 8)}
RECKONING_FIGURES = ["reckoning_accuracy", "reckoning_steps", "reckoning_recitation", "reckoning_timing"]


def right(method: str, distractors: int, steps: int, context: int, hops: int) -> bool:
    """At the trained steps (N encoded, 0 in context) RIGHT; random_facts: one-hop contexts 0, 1 only;
    no_facts: never; encoded methods at other steps: contexts below the step count (accuracy steps / 10)."""
    if method in rk.ENCODED and steps != N:
        return context < steps
    if method == "random_facts":
        return hops == 1 and context < 2
    return context in RIGHT.get((method, distractors), ())


def answers_table(seeds=(0, 1), methods=METHODS) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for method in methods:
            # encoded: steps 0..N+2; the in-context methods at 0, plus a stray ft_icr row set at N (never read)
            all_steps = range(0, N + 3) if method in rk.ENCODED else [0, N] if method == "ft_icr" else [0]
            for steps in all_steps:
                for distractors in (0, 4):
                    for context in range(CONTEXTS):
                        for attribute, hops in QUESTIONS:
                            ok = right(method, distractors, steps, context, hops) or (method == "ft_icr" and steps)
                            rows.append({"seed": seed, "method": method, "context_id": 100 * distractors + context,
                                         "entity_id": context, "distractors": distractors, "attribute": attribute,
                                         "hops": hops, "steps": steps, "exact": bool(ok),
                                         "first_rank": 1 if ok or context == 9 else 5,  # context 9: first token only
                                         "answer": "Paris", "generated": "Paris" if ok else "Rome"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def answers() -> pd.DataFrame:
    return answers_table()


@pytest.fixture(scope="module")
def accuracy(answers) -> pd.DataFrame:
    return rk.reckoning_accuracy(answers, N, n_bootstrap=200, seed=0)


def cell(table, **keys) -> pd.Series:
    part = table
    for k, v in keys.items():
        part = part[part[k] == v]
    assert len(part) == 1, keys
    return part.iloc[0]


# ---- tables ------------------------------------------------------------------------------------------
def test_accuracy_per_cell_by_hand_at_the_trained_steps(accuracy):
    assert list(accuracy.columns) == rk.ANSWER_COLUMNS
    assert list(dict.fromkeys(accuracy["method"])) == METHODS  # settings order
    assert set(accuracy["hops"]) == {rk.ALL_HOPS, 1, 2} and set(accuracy["distractors"]) == {0, 4}
    mt = cell(accuracy, method="reckoning_mt", hops=1, distractors=4)
    assert mt["steps"] == N and mt["accuracy"] == pytest.approx(0.9) and mt["top1"] == 1.0  # context 9: first token
    assert mt["n_questions"] == 20 and mt["n_seeds"] == 2  # 10 contexts x 2 seeds
    assert mt["accuracy_low"] <= 0.9 <= mt["accuracy_high"] and mt["top1_low"] == mt["top1_high"] == 1.0
    ft = cell(accuracy, method="ft_icr", hops=rk.ALL_HOPS, distractors=4)  # steps 0 only: the stray rows at N unread
    assert ft["steps"] == 0 and ft["accuracy"] == pytest.approx(0.5) and ft["n_questions"] == 40
    assert ft["top1"] == pytest.approx(0.6)
    floor = cell(accuracy, method="no_facts", hops=2, distractors=0)
    assert floor["accuracy"] == 0 and floor["accuracy_low"] == floor["accuracy_high"] == 0
    random = accuracy[(accuracy["method"] == "random_facts") & (accuracy["distractors"] == 0)].set_index("hops")
    assert random.loc[1, "accuracy"] == pytest.approx(0.2) and random.loc[2, "accuracy"] == 0
    assert random.loc[rk.ALL_HOPS, "accuracy"] == pytest.approx(0.1)  # pooled over hop counts


def test_steps_table_is_the_encoded_methods_against_test_time_steps(answers):
    steps = rk.reckoning_steps(answers, n_bootstrap=100, seed=0)
    assert list(steps.columns) == rk.ANSWER_COLUMNS and set(steps["method"]) == set(rk.ENCODED)
    assert sorted(steps["steps"].unique()) == list(range(0, N + 3))
    curve = steps[(steps["method"] == "reckoning") & (steps["hops"] == 1) & (steps["distractors"] == 0)]
    got = dict(zip(curve["steps"], curve["accuracy"]))
    assert got == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3, N: 0.8, 5: 0.5, 6: 0.6})
    at_n = cell(steps, method="reckoning_mt", hops=rk.ALL_HOPS, distractors=4, steps=N)
    accuracy = rk.reckoning_accuracy(answers, N, n_bootstrap=100, seed=0)
    assert at_n["accuracy"] == cell(accuracy, method="reckoning_mt", hops=rk.ALL_HOPS, distractors=4)["accuracy"]


# (method, kind) -> facts at positions below this are recited exactly after N steps (relevant: positions 0-3,
# distractors: 4 on); elsewhere none
RECITED = {("reckoning_mt", "relevant"): 3, ("reckoning", "relevant"): 1, ("reckoning_mt", "distractor"): 5}


def recitation_table() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for method, all_steps in (("reckoning_mt", range(1, N + 3)), ("reckoning", range(1, N + 3)), ("base", [0])):
            for steps in all_steps:
                for distractors in (0, 4):
                    facts = [("relevant", p) for p in range(4)] + [("distractor", 4 + p) for p in range(distractors)]
                    for context in range(3):
                        for kind, position in facts:
                            ok = steps == N and position < RECITED.get((method, kind), 0)
                            rows.append({"seed": seed, "method": method, "context_id": 10 * distractors + context,
                                         "entity_id": context, "distractors": distractors, "steps": steps,
                                         "position": position, "kind": kind, "exact": ok})
    return pd.DataFrame(rows)


def test_recitation_means_per_method_kind_and_steps():
    table = rk.reckoning_recitation(recitation_table(), n_bootstrap=100, seed=0)
    assert list(table.columns) == rk.RECITATION_COLUMNS
    assert list(dict.fromkeys(table["method"])) == ["reckoning", "reckoning_mt", "base"]  # METHODS, then others
    mt = cell(table, method="reckoning_mt", distractors=0, steps=N, kind="relevant")
    assert mt["exact"] == pytest.approx(0.75) and mt["n_facts"] == 24 and mt["n_seeds"] == 2  # 4 x 3 contexts x 2
    pooled = cell(table, method="reckoning_mt", distractors=4, steps=N, kind="all")
    assert pooled["exact"] == pytest.approx((3 + 1) / 8) and pooled["n_facts"] == 48
    assert cell(table, method="reckoning", distractors=4, steps=N, kind="relevant")["exact"] == pytest.approx(0.25)
    assert cell(table, method="reckoning_mt", distractors=0, steps=N + 1, kind="all")["exact"] == 0
    base = cell(table, method="base", distractors=0, steps=0, kind="all")
    assert base["exact"] == 0 and base["exact_low"] == base["exact_high"] == 0
    assert "distractor" not in set(table.loc[table["distractors"] == 0, "kind"])  # no such facts: no rows


def timing_table() -> pd.DataFrame:
    rows = []
    for seed, extra in ((0, 0.0), (1, 1.0)):
        for k in (1, 4, 16):
            for context in range(2):  # two contexts: seconds 0.5 apart
                rows += [{"seed": seed, "method": "reckoning_mt", "questions": k, "mode": "encode once",
                          "seconds": 2.0 + 0.1 * k + extra + 0.5 * context},
                         {"seed": seed, "method": "ft_icr", "questions": k, "mode": "in context",
                          "seconds": 0.5 * k + extra + 0.5 * context}]
    return pd.DataFrame(rows)


def test_timing_means_over_seeds_and_per_question():
    table = rk.reckoning_timing(timing_table().sample(frac=1, random_state=0))
    assert list(table.columns) == rk.TIMING_COLUMNS
    assert list(dict.fromkeys(table["method"])) == ["reckoning_mt", "ft_icr"]
    mt = cell(table, method="reckoning_mt", questions=16)
    assert mt["mode"] == "encode once" and mt["seconds"] == pytest.approx(2.0 + 1.6 + 0.5 + 0.25)
    assert mt["seconds_per_question"] == pytest.approx(4.35 / 16) and mt["n_runs"] == 4 and mt["n_seeds"] == 2
    assert cell(table, method="ft_icr", questions=4)["seconds"] == pytest.approx(2.0 + 0.75)


# ---- finding -----------------------------------------------------------------------------------------
def test_finding_reckoning_beats_ft_icr_with_distractors_and_not_without(answers):
    finding = rk.reckoning_finding(answers, N, n_bootstrap=500, seed=0)
    json.dumps(finding)  # JSON-able
    assert finding["method"] == "reckoning_mt" and finding["testable"] and finding["reason"] is None
    with_d = finding["with_distractors"]
    assert with_d["difference"] == pytest.approx(0.4) and with_d["value"]["mean"] == pytest.approx(0.9)
    assert with_d["baseline"]["mean"] == pytest.approx(0.5) and with_d["distractors"] == [4]
    assert 0 < with_d["interval_95"][0] < 0.4 < with_d["interval_95"][1]
    assert with_d["verdict"] == finding["verdict"] == "RECKONING beats FT-ICR"
    assert with_d["n_questions"] == 40 and with_d["n_seeds"] == 2
    without = finding["without_distractors"]  # equal accuracy (0.7), right on other questions
    assert without["difference"] == 0 and without["interval_95"][0] < 0 < without["interval_95"][1]
    assert without["verdict"] == "no difference"
    acc = finding["accuracy"]
    assert list(acc) == METHODS and acc["reckoning"]["with_distractors"]["mean"] == pytest.approx(0.8)
    assert acc["no_facts"]["without_distractors"] == {"mean": 0.0, "interval_95": [0.0, 0.0], "n_questions": 40}
    assert finding["original"]["label_accuracy_with_distractors"] == {"reckoning": 0.825, "ft_icr": 0.709}
    assert "+0.400" in finding["statement"]


def test_finding_ft_icr_ahead_and_single_seed():
    table = answers_table(seeds=(3,))
    flip = (table["method"] == "ft_icr") & (table["distractors"] == 4) & (table["steps"] == 0)
    table.loc[flip, "exact"] = True  # FT-ICR right on every question with distractors
    worse = (table["method"] == "reckoning_mt") & (table["distractors"] == 4) & (table["entity_id"] >= 5)
    table.loc[worse, "exact"] = False  # RECKONING-MT on half of them: 0.5 vs 1.0
    finding = rk.reckoning_finding(table, N, n_bootstrap=300, seed=0)
    block = finding["with_distractors"]
    assert block["difference"] == pytest.approx(-0.5) and block["n_seeds"] == 1 and finding["seeds"] == [3]
    assert block["interval_95"][0] < -0.5 < block["interval_95"][1] < 0  # one seed: the bootstrap still works
    assert block["n_questions"] == 20 and finding["verdict"] == "FT-ICR beats RECKONING"


def test_finding_prefers_multi_task_else_single_task_and_says_which(answers):
    single = rk.reckoning_finding(answers[answers["method"] != "reckoning_mt"], N, n_bootstrap=200, seed=0)
    assert single["method"] == "reckoning" and single["with_distractors"]["difference"] == pytest.approx(0.3)
    assert "reckoning answers" in single["statement"]


@pytest.mark.parametrize("drop, missing", [(["ft_icr"], "FT-ICR"), (list(rk.ENCODED), "encoded method")])
def test_finding_cannot_be_tested_without_either_side(answers, drop, missing):
    finding = rk.reckoning_finding(answers[~answers["method"].isin(drop)], N, n_bootstrap=50, seed=0)
    json.dumps(finding)
    assert not finding["testable"] and finding["verdict"] == "cannot be tested" and missing in finding["reason"]
    assert finding["with_distractors"] is None and finding["without_distractors"] is None
    md = "\n".join(rk.reckoning_markdown(finding))
    assert md.startswith("## RECKONING") and "Not tested" in md and "| no_facts |" in md


def test_finding_without_distractor_questions_cannot_be_tested(answers):
    finding = rk.reckoning_finding(answers[answers["distractors"] == 0], N, n_bootstrap=50, seed=0)
    assert finding["verdict"] == "cannot be tested" and finding["with_distractors"] is None
    assert finding["without_distractors"]["verdict"] == "no difference"


def test_same_inputs_same_outputs_whatever_the_row_order(answers):
    shuffled = answers.sample(frac=1, random_state=1)
    a = rk.reckoning_finding(answers, N, n_bootstrap=300, seed=0)
    assert a == rk.reckoning_finding(shuffled, N, n_bootstrap=300, seed=0)
    assert a != rk.reckoning_finding(answers, N, n_bootstrap=300, seed=1)  # another seed, another resample
    pd.testing.assert_frame_equal(rk.reckoning_accuracy(answers, N, 100, 0), rk.reckoning_accuracy(shuffled, N, 100, 0))
    recitation = recitation_table()
    pd.testing.assert_frame_equal(rk.reckoning_recitation(recitation, 100, 0),
                                  rk.reckoning_recitation(recitation.sample(frac=1, random_state=2), 100, 0))


def test_markdown_section(answers):
    md = rk.reckoning_markdown(rk.reckoning_finding(answers, N, n_bootstrap=200, seed=0))
    text = "\n".join(md)
    assert md[0] == "## RECKONING" and "Verdict: RECKONING beats FT-ICR." in text
    assert "| with distractors | 4 | 0.900 [" in text and "| RECKONING beats FT-ICR | 40 |" in text
    assert "| without distractors | 0 |" in text and "| no difference |" in text
    assert "82.5%" in text and "70.9%" in text and "99.3%" in text
    assert rk.reckoning_markdown(None) == ["## RECKONING", "", "Not tested: no RECKONING summary was given.", ""]


def test_empty_tables_keep_their_columns():
    empty = answers_table().iloc[:0]
    assert list(rk.reckoning_accuracy(empty, N, 10, 0).columns) == rk.ANSWER_COLUMNS
    assert rk.reckoning_steps(empty, 10, 0).empty
    assert rk.reckoning_finding(empty, N, 10, 0)["verdict"] == "cannot be tested"


# ---- figures ------------------------------------------------------------------------------------------
def test_the_reckoning_figures_have_entries_and_captions():
    for name in RECKONING_FIGURES:
        figure = FIGURES[name]
        option = name.split("_")[1]
        assert figure.stage == "reckoning" and figure.inputs == {option: f"reckoning_summary_{option}"}
        assert figure.enabled == "reckoning.enabled" and figure.category == "RECKONING"
        assert figure.caption.parent.parent.name == "reckoning"
        caption = figure.caption.read_text(encoding="utf-8")
        assert 'snakemake.config["reckoning"]' in caption
    from kcircuits.config import stage_sections

    assert stage_sections()["reckoning"] == ["reckoning", "entities", "circuits", "circuit_pairs", "analysis"]
    assert stage_sections()["companies"] == []


@pytest.fixture(scope="module")
def figure_tables(tmp_path_factory, answers):
    root = tmp_path_factory.mktemp("reckoning")
    tables = {"accuracy": rk.reckoning_accuracy(answers, N, 100, 0), "steps": rk.reckoning_steps(answers, 100, 0),
              "recitation": rk.reckoning_recitation(recitation_table(), 100, 0),
              "timing": rk.reckoning_timing(timing_table())}
    paths = {}
    for name, table in tables.items():
        paths[name] = root / f"{name}.parquet"
        table.to_parquet(paths[name])
    pd.DataFrame({"entity_id": [0, 1], "freq_group": ["low", "high"]}).to_parquet(root / "entities.parquet")
    return root, paths


@pytest.mark.parametrize("name", RECKONING_FIGURES)
def test_reckoning_figures_are_written_and_reproducible(figure_tables, name, tmp_path):
    root, paths = figure_tables
    settings = json.dumps({"seed": 0, "analysis": {"topology": {"n_bootstrap": 100}},
                           "reckoning": {"methods": METHODS, "distractors": [0, 4, 8], "inner": {"steps": N}}})
    (option,) = FIGURES[name].inputs
    argv = ["figure", name, "--settings", settings, "--entities", str(root / "entities.parquet"),
            f"--{option}", str(paths[option])]
    assert_figure_drawn_twice_alike(argv, tmp_path)


def test_accuracy_figure_bars_follow_the_settings_order(figure_tables, tmp_path, monkeypatch):
    from kcircuits.studies.reckoning import plots as fr

    root, paths = figure_tables
    drawn = []
    monkeypatch.setattr(fr, "finish", lambda plt, fig, pdf, png: (drawn.append(fig), plt.close(fig)))
    order = ["ft_icr", "no_facts", "reckoning_mt", "reckoning", "random_facts"]
    fr.plot_reckoning_accuracy(pd.read_parquet(paths["accuracy"]), order, tmp_path / "a.pdf", tmp_path / "a.png")
    ax = drawn[0].axes[0]
    assert ax.get_title() == "one-hop questions" and drawn[0].axes[1].get_title() == "two-hop questions"
    heights = [p.get_height() for p in ax.patches]  # a bar per method and distractor count, methods in turn
    assert np.allclose(heights[:6], [0.7, 0.5, 0, 0, 0.7, 0.9])  # ft_icr, no_facts, reckoning_mt at 0 and 4
