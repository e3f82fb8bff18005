"""Knowledge-interplay summaries (kcircuits.studies.interplay.summary), their figures and findings, on hand-made
measurement tables whose answers are known: order runs where A first shifts B's accuracy by an exact
amount (interference, synergy, none), hand-made circuit edge sets, forgetting curves with known drops."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import assert_figure_drawn_twice_alike
from kcircuits.figures.stage import all_figures
from kcircuits.figures.style import name_order
from kcircuits.studies.interplay import summary as ip

FIGURES = all_figures()

TYPES = {"city": ["city"], "company": ["company"], "major": ["major"]}
STEPS = [0, 2, 4, 8]
GROUPS = ["low", "high"]
# A -> B: the exact shift of B's top-1 after A first, at every step after 0 (0 elsewhere); SPREAD: +-0.25
# by entity (mean 0, but an interval that spans 0)
SHIFT = {("city", "major"): -0.25, ("company", "major"): 0.125}
SPREAD = ("major", "company")
INTERPLAY_FIGURES = ["order_accuracy", "order_heatmap", "order_circuits", "forgetting_recall", "forgetting_circuits"]


def base_top1(entity: int, attribute: str, step: int) -> float:
    """The random run's top-1 (dyadic numbers: every difference below is exact)."""
    return 0.25 + 0.0625 * (entity % 4) + 0.03125 * list(TYPES).index(attribute) + step / 64


def order_accuracy(seeds=(0, 1), n_entities=8, noise: float = 0.0) -> pd.DataFrame:
    """Accuracy rows of every stream; an A->B run's B facts are SHIFT[A, B] (+ per-fact noise) off the
    random run after step 0; its other facts are 0.3 off (they must not count)."""
    rng = np.random.default_rng(7)
    rows = []
    streams = [("random", None, None)] + [(f"{a}-{b}", a, b) for a in TYPES for b in TYPES if a != b]
    for seed in seeds:
        for stream, a, b in streams:
            for entity in range(n_entities):
                for attribute in TYPES:
                    wobble = rng.normal(0, noise) if noise else 0.0
                    for step in STEPS:
                        value = base_top1(entity, attribute, step)
                        shift = SHIFT.get((a, b), 0.0) + (0.25 - 0.5 * (entity // 2 % 2)) * ((a, b) == SPREAD)
                        if a is not None and step > 0:
                            value += (shift + wobble) if attribute == b else 0.3
                        for target in ("current", "original"):
                            rows.append({"study": "order", "stream": stream, "first": a, "second": b, "seed": seed,
                                         "step": step, "checkpoint": f"step-{step:06d}", "target": target,
                                         "entity_id": entity, "type": "new", "freq_group": GROUPS[entity % 2],
                                         "attribute": attribute,
                                         "top1": value if target == "current" else 0.9, "hit_at_k": 1.0,
                                         "n_prompts": 3})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def outcome() -> pd.DataFrame:
    return ip.order_outcome(order_accuracy(), TYPES, "attribute", n_bootstrap=200, seed=0)


def row(outcome, a, b, metric="final", group="all"):
    part = outcome[(outcome["first"] == a) & (outcome["second"] == b) & (outcome["metric"] == metric)
                   & (outcome["freq_group"] == group)]
    assert len(part) == 1
    return part.iloc[0]


# ---- order -------------------------------------------------------------------------------------------
def test_outcome_sign_and_verdict_of_known_interference_synergy_and_null(outcome):
    assert list(dict.fromkeys(zip(outcome["first"], outcome["second"]))) == [
        (a, b) for a in TYPES for b in TYPES if a != b]  # every pair, in the types' order
    hurt = row(outcome, "city", "major")
    assert hurt["difference"] == -0.25 and hurt["low"] == hurt["high"] == -0.25 and hurt["verdict"] == "interference"
    assert hurt["value"] == pytest.approx(hurt["random"] - 0.25)
    assert hurt["n_facts"] == 8 and hurt["n_seeds"] == 2
    helped = row(outcome, "company", "major")
    assert helped["difference"] == 0.125 and helped["verdict"] == "synergy"
    null = row(outcome, "major", "city")
    assert null["difference"] == 0 and null["low"] == null["high"] == 0 and null["verdict"] == "no difference"
    spread = row(outcome, *SPREAD)  # mean 0, facts either way: an interval across 0
    assert spread["difference"] == 0 and spread["low"] < 0 < spread["high"] and spread["verdict"] == "no difference"
    # the other facts of a run (0.3 off) are not B's: they never enter
    assert set(outcome["difference"].round(6)) <= {-0.25, 0.125, 0.0, round(-0.25 * 7 / 8, 6), round(0.125 * 7 / 8, 6)}
    # per frequency group: the same shift; each group has half the facts
    low = row(outcome, "city", "major", group="low")
    assert low["difference"] == -0.25 and low["n_facts"] == 4
    assert set(outcome["freq_group"]) == {"all", "low", "high"}


def test_outcome_auc_is_the_normalised_trapezoid(outcome):
    # the shift is 0 at step 0 and d from step 2 on: trapezoid (0 + d)/2 * 2 + d * 2 + d * 4 = 7 d, over 8 steps
    assert row(outcome, "city", "major", "auc")["difference"] == pytest.approx(-0.25 * 7 / 8)
    assert row(outcome, "company", "major", "auc")["verdict"] == "synergy"


def test_fact_auc_and_final_of_a_hand_computed_curve():
    steps, top1 = [0, 1, 3, 7], [0.0, 0.5, 0.5, 1.0]
    facts = pd.DataFrame({"seed": 0, "stream": "random", "first": None, "second": None, "entity_id": 3, "type": "new",
                          "freq_group": "low", "attribute": "city", "step": steps, "top1": top1})
    facts = pd.concat([facts, facts.assign(entity_id=4, top1=0.5)])  # a flat curve: auc = its value
    scores = ip.fact_scores(facts.sample(frac=1, random_state=0)).set_index("entity_id")  # order does not matter
    # (0 + .5)/2 * 1 + .5 * 2 + (.5 + 1)/2 * 4 = 4.25, over 7 steps
    assert scores.loc[3, "auc"] == pytest.approx(4.25 / 7) and scores.loc[3, "final"] == 1.0
    assert scores.loc[4, "auc"] == pytest.approx(0.5) and scores.loc[4, "final"] == 0.5
    one = ip.fact_scores(facts[facts["step"] == 0])  # a single step: auc = that top-1
    assert list(one["auc"]) == list(one["final"]) == [0.0, 0.5]


def test_bootstrap_is_deterministic_and_covers_a_noisy_shift():
    table = order_accuracy(noise=0.05)
    a = ip.order_outcome(table, TYPES, "attribute", n_bootstrap=300, seed=0)
    b = ip.order_outcome(table.sample(frac=1, random_state=1), TYPES, "attribute", n_bootstrap=300, seed=0)
    pd.testing.assert_frame_equal(a, b)  # seeded, and independent of the rows' order
    other = ip.order_outcome(table, TYPES, "attribute", n_bootstrap=300, seed=1)
    hurt = row(a, "city", "major")
    assert hurt["low"] < hurt["difference"] < hurt["high"] < 0 and hurt["verdict"] == "interference"
    assert hurt["low"] != row(other, "city", "major")["low"]  # another seed, another resample
    assert hurt["value_low"] < hurt["value"] < hurt["value_high"]


def test_order_curves_mean_per_knowledge_and_pooled_groups():
    curves = ip.order_curves(order_accuracy(seeds=(0,)), {"city": ["city"], "major": ["major"]}, "attribute")
    assert set(curves["knowledge"]) == {"city", "major"}  # company is in no type: dropped
    rand = curves[(curves["stream"] == "random") & (curves["knowledge"] == "city") & (curves["step"] == 8)]
    pooled = rand[rand["freq_group"] == "all"].iloc[0]
    expected = np.mean([base_top1(e, "city", 8) for e in range(8)])
    assert pooled["top1"] == pytest.approx(expected) and pooled["n_facts"] == 8
    assert pd.isna(pooled["first"])
    run = curves[(curves["stream"] == "city-major") & (curves["knowledge"] == "major") & (curves["step"] == 8)
                 & (curves["freq_group"] == "all")].iloc[0]
    assert run["top1"] == pytest.approx(np.mean([base_top1(e, "major", 8) for e in range(8)]) - 0.25)


def test_order_finding_and_markdown(outcome):
    finding = ip.order_finding(outcome)
    json.dumps(finding)  # JSON-able
    pairs = {(p["first"], p["second"]): p for p in finding["pairs"]}
    assert len(pairs) == 6 and pairs["city", "major"]["final"]["verdict"] == "interference"
    assert pairs["city", "major"]["final"]["interval_95"] == [-0.25, -0.25]
    assert finding["counts"]["final"] == {"interference": 1, "synergy": 1, "no difference": 4}
    assert "6 ordered pairs" in finding["statement"]
    md = "\n".join(ip.order_markdown(finding))
    assert md.startswith("## Knowledge order") and "| city → major |" in md and "-0.250 [-0.250, -0.250]" in md


def edges(names) -> list[tuple[str, str]]:
    return [(f"p{n}", f"c{n}") for n in names]


# (stream, step) -> edges of the major/new/high circuit; the random run's in the same place
ORDER_EDGES = {("random", 4): "abcd", ("city-major", 4): "abcd", ("company-major", 4): "ef",
               ("random", 8): "bcde", ("city-major", 8): "abc", ("company-major", 8): "bcde"}


def order_circuit_tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    circuits, hits = [], []
    streams = {"random": (None, None), "city-major": ("city", "major"), "company-major": ("company", "major")}
    for (stream, step), names in ORDER_EDGES.items():
        first, second = streams[stream]
        lead = {"study": "order", "stream": stream, "first": first, "second": second, "seed": seed, "step": step,
                "checkpoint": f"step-{step:06d}", "type": "new", "freq_group": "high", "budget": "0.1"}
        for task, cell_edges in (("major", edges(names)), ("city", edges("xyz"))):
            circuits += [{**lead, "task": task, "parent": p, "child": c, "score": 1.0} for p, c in cell_edges]
            for ablation, value in (("zero", 0.5 + step / 100 + (0.1 if first else 0)), ("mean", 0.9)):
                hits.append({**lead, "task": task, "ablation": ablation, "n_edges": len(cell_edges), "hit_at_k": value,
                             "mean_rank": 2.0, "n_prompts": 5, "full_model_hit_at_k": 0.95})
    return pd.DataFrame(circuits), pd.DataFrame(hits)


def test_order_overlap_jaccard_of_hand_made_edge_sets():
    circuits, hits = order_circuit_tables()
    overlap = ip.order_overlap(circuits, hits, TYPES, "attribute")
    assert list(overlap.columns) == ["seed", "first", "second", "step", "budget", "task", "type", "freq_group",
                                     "jaccard", "hit_at_k", "random_hit_at_k"]
    assert set(overlap["task"]) == {"major"}  # only B's cells (the city cells belong to A)
    got = {(r.first, r.step): r.jaccard for r in overlap.itertuples()}
    assert got == {("city", 4): 1.0, ("company", 4): 0.0, ("city", 8): pytest.approx(2 / 5), ("company", 8): 1.0}
    first = overlap[(overlap["first"] == "city") & (overlap["step"] == 4)].iloc[0]
    assert first["hit_at_k"] == pytest.approx(0.64) and first["random_hit_at_k"] == pytest.approx(0.54)  # zero ablation
    # an empty circuit against a non-empty one: 0; two empty ones: undefined
    gone = (circuits["stream"] == "company-major") & (circuits["step"] == 8) & (circuits["task"] == "major")
    circuits = circuits[~gone]
    again = ip.order_overlap(circuits, hits, TYPES, "attribute")
    assert again[(again["first"] == "company") & (again["step"] == 8)]["jaccard"].iloc[0] == 0.0
    none = circuits[~((circuits["step"] == 8) & (circuits["task"] == "major"))]
    assert ip.order_overlap(none, hits, TYPES, "attribute").query("step == 8")["jaccard"].isna().all()


# ---- forgetting -------------------------------------------------------------------------------------
# (corpus, replay) -> high-frequency top-1 at steps 0, 4, 8 (low frequency: 0.1 lower at each step)
FORGET_STEPS = [0, 4, 8]
CURVES = {("other_entities", 0.0): [0.8, 0.6, 0.5], ("other_entities", 0.2): [0.8, 0.78, 0.76],
          ("other_entities", 1.0): [0.8, 0.8, 0.85], ("conflicting", 0.0): [0.8, 0.5, 0.6],
          ("conflicting", 1.0): [0.8, 0.7, 0.7]}


def forgetting_accuracy(seeds=(0, 1)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for (corpus, share), curve in CURVES.items():
            for step, high in zip(FORGET_STEPS, curve):
                for entity in range(8):
                    group = GROUPS[entity % 2]
                    value = high if group == "high" else high - 0.1
                    for etype in ("new", "revised"):
                        rows.append({"study": "forgetting", "corpus": corpus, "replay": share, "seed": seed,
                                     "step": step, "checkpoint": f"step-{step:06d}", "target": "current",
                                     "entity_id": entity + (100 if etype == "revised" else 0), "type": etype,
                                     "freq_group": group, "attribute": "city",
                                     "top1": value + 0.02 * seed * (step > 0), "hit_at_k": 1.0, "n_prompts": 2})
    table = pd.DataFrame(rows)
    return pd.concat([table, table.assign(target="original", top1=0.0)], ignore_index=True)


def test_forgetting_recall_means_pooled_rows_and_drop():
    recall = ip.forgetting_recall(forgetting_accuracy(seeds=(0,)))
    assert set(recall["type"]) == {"new", "revised", "all"} and set(recall["freq_group"]) == {"low", "high", "all"}
    key = recall.set_index(["corpus", "replay", "step", "type", "freq_group"])
    assert key.loc[("other_entities", 0.0, 8, "all", "high"), "drop"] == pytest.approx(-0.3)
    assert key.loc[("other_entities", 0.0, 8, "all", "high"), "n_facts"] == 8  # 4 entities x 2 types
    assert key.loc[("other_entities", 0.0, 8, "new", "all"), "top1"] == pytest.approx(0.45)  # (0.5 + 0.4) / 2
    assert key.loc[("other_entities", 0.2, 0, "revised", "low"), "drop"] == 0
    assert key.loc[("other_entities", 1.0, 8, "all", "all"), "drop"] == pytest.approx(0.05)


def test_forgetting_finding_smallest_share_and_worst_drop():
    finding = ip.forgetting_finding(ip.forgetting_recall(forgetting_accuracy()), tolerance=0.05)
    json.dumps(finding)
    other = finding["corpora"]["other_entities"]
    shares = {s["share"]: s for s in other["shares"]}
    # seed 1 is 0.02 higher after step 0: the mean over seeds drops 0.01 less
    assert shares[0.0]["worst_drop"] == pytest.approx(0.29) and shares[0.0]["worst_step"] == 8
    assert not shares[0.0]["within"] and shares[0.2]["within"] and shares[1.0]["within"]
    assert shares[0.2]["worst_drop"] == pytest.approx(0.03) and shares[1.0]["worst_drop"] == 0
    assert other["smallest_share"] == 0.2 and "0.2" in other["statement"]
    conflicting = finding["corpora"]["conflicting"]
    assert conflicting["smallest_share"] is None and "no replay share" in conflicting["statement"]
    assert {s["share"]: s["worst_step"] for s in conflicting["shares"]} == {0.0: 4, 1.0: 4}
    assert finding["seeds"] == [0, 1]
    strict = ip.forgetting_finding(ip.forgetting_recall(forgetting_accuracy()), tolerance=0.01)
    assert strict["corpora"]["other_entities"]["smallest_share"] == 1.0
    md = "\n".join(ip.forgetting_markdown(finding))
    assert "## Forgetting and replay" in md and "### other_entities" in md and "| 0 | 0.290 | 8 | no |" in md


def forgetting_circuit_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per step the edges of one cell; another cell is empty throughout."""
    per_step = {0: "abcd", 4: "ab", 8: ""}
    circuits, hits = [], []
    for share in (0.0, 1.0):
        for step, names in per_step.items():
            names = names if share == 0.0 else "abcd"
            lead = {"study": "forgetting", "corpus": "other_entities", "replay": share, "seed": 0, "step": step,
                    "checkpoint": f"step-{step:06d}", "type": "new", "budget": "0.1", "task": "city"}
            circuits += [{**lead, "freq_group": "high", "parent": p, "child": c, "score": 1.0} for p, c in edges(names)]
            for group, n in (("high", len(names)), ("low", 0)):
                for ablation in ("zero", "mean"):
                    hits.append({**lead, "freq_group": group, "ablation": ablation, "n_edges": n,
                                 "hit_at_k": (0.9 - step / 20) if ablation == "zero" else 0.1, "mean_rank": 1.0,
                                 "n_prompts": 4, "full_model_hit_at_k": 0.95})
    return pd.DataFrame(circuits), pd.DataFrame(hits)


def test_forgetting_circuits_jaccard_to_step_zero():
    table = ip.forgetting_circuits(*forgetting_circuit_tables())
    key = table.set_index(["replay", "step", "freq_group"])
    assert key.loc[(0.0, 0, "high"), "jaccard"] == 1.0
    assert key.loc[(0.0, 4, "high"), "jaccard"] == 0.5  # {a, b} of {a, b, c, d}
    assert key.loc[(0.0, 8, "high"), "jaccard"] == 0.0  # empty now, not before
    assert key.loc[(1.0, 8, "high"), "jaccard"] == 1.0
    assert key.xs("low", level="freq_group")["jaccard"].isna().all()  # empty before and after
    assert key.loc[(0.0, 8, "high"), "hit_at_k"] == pytest.approx(0.5)  # zero ablation
    assert key.loc[(0.0, 8, "high"), "full_model_hit_at_k"] == 0.95 and len(table) == 12


# ---- figures ------------------------------------------------------------------------------------------
def test_the_interplay_figures_have_entries_and_captions():
    names = [n for n, f in FIGURES.items() if f.stage in ("order", "forgetting")]
    assert names == INTERPLAY_FIGURES
    for name in names:
        figure = FIGURES[name]
        (key,) = figure.inputs.values()
        assert key == f"{figure.stage}_{next(iter(figure.inputs))}"  # the summary tables' PATHS keys
        assert figure.enabled == f"{figure.stage}.enabled" and figure.category == "Knowledge interplay"
        caption = figure.caption.read_text(encoding="utf-8")
        assert figure.caption.parent.parent.name == "interplay"
        assert 'snakemake.config["run"]' in caption and 'snakemake.config["train"]["seeds"]' in caption, name
    from kcircuits.config import stage_sections

    assert stage_sections()["order"] == ["order", "circuits", "circuit_pairs", "evaluate"]
    assert stage_sections()["forgetting"] == ["forgetting", "circuits", "circuit_pairs", "evaluate"]


@pytest.fixture(scope="module")
def figure_tables(tmp_path_factory, outcome):
    root = tmp_path_factory.mktemp("interplay")
    circuits, hits = order_circuit_tables()
    two = [order_circuit_tables(seed) for seed in (0, 1)]
    overlap = ip.order_overlap(pd.concat([t[0] for t in two]), pd.concat([t[1] for t in two]), TYPES, "attribute")
    fc, fh = forgetting_circuit_tables()
    tables = {"outcome": outcome, "overlap": overlap, "recall": ip.forgetting_recall(forgetting_accuracy()),
              "circuits": ip.forgetting_circuits(fc, fh)}
    paths = {}
    for name, table in tables.items():
        paths[name] = root / f"{name}.parquet"
        table.to_parquet(paths[name])
    entities = pd.DataFrame({"entity_id": [0, 1, 2], "type": ["new", "new", "background"],
                             "freq_group": ["high", "low", None], "frequency": [8, 1, 0]})
    entities.to_parquet(root / "entities.parquet")
    return root, paths


@pytest.mark.parametrize("name", INTERPLAY_FIGURES)
def test_interplay_figures_are_written_and_reproducible(figure_tables, name, tmp_path):
    root, paths = figure_tables
    settings = json.dumps({"seed": 0, "order": {"types": TYPES},
                           "forgetting": {"tolerance": 0.05, "corpora": ["other_entities", "conflicting"]},
                           "circuits": {"edge_budgets": [0.1], "hit_k": 10}})
    (option,) = FIGURES[name].inputs
    argv = ["figure", name, "--settings", settings, "--entities", str(root / "entities.parquet"),
            f"--{option}", str(paths[option])]
    assert_figure_drawn_twice_alike(argv, tmp_path)


def test_figure_curves_are_the_tables_means(figure_tables):
    from kcircuits.studies.interplay import plots as fi

    root, paths = figure_tables
    curves = fi.order_circuit_curves(pd.read_parquet(paths["overlap"]), "0.1").set_index(["first", "step"])
    assert curves.loc[("city", 8), "mean"] == pytest.approx(0.4) and curves.loc[("city", 8), "n_seeds"] == 2
    recall = fi.forgetting_recall_curves(pd.read_parquet(paths["recall"])).set_index(
        ["corpus", "replay", "freq_group", "step"])
    assert recall.loc[("other_entities", 0.0, "high", 8), "mean"] == pytest.approx(0.51)  # seeds 0.5 and 0.52
    circuits = fi.forgetting_circuit_curves(pd.read_parquet(paths["circuits"]), "0.1").set_index(
        ["replay", "series", "step"])
    assert circuits.loc[(0.0, "jaccard", 4), "mean"] == pytest.approx(0.5)  # the empty cell is left out
    assert name_order(list(TYPES), ["major", "city", "extra"]) == ["city", "major", "extra"]
    with pytest.raises(ValueError, match="budget"):
        fi.order_circuit_curves(pd.read_parquet(paths["overlap"]), "30")


# ---- findings -------------------------------------------------------------------------------------------
def test_findings_take_the_interplay_summaries(tmp_path, outcome):
    from kcircuits.analysis.report_stage import findings_markdown
    from kcircuits.cli import main

    rows = [{"seed": 0, "checkpoint": f"epoch-{e:03d}", "epoch": float(e), "target": "current", "entity_id": i,
             "type": "revised" if i % 2 else "new", "freq_group": "high", "attribute": "city",
             "query_top1": 0.1 * e + 0.2 * (i % 2)} for e in range(3) for i in range(8)]
    pd.DataFrame(rows).to_parquet(tmp_path / "entities.parquet")
    phase = {"budget": "0.1", "curves": {}}
    depth = {"headline_budget": "0.1", "units": "layers per epoch", "budgets": {"0.1": {"pooled": {
        "slope": -0.2, "ci_low": -0.3, "ci_high": -0.1, "n_curves": 6, "verdict": "deep-to-shallow"}}}}
    order = ip.order_finding(outcome) | {"provenance": {"stage": "order_summary"}}
    forgetting = ip.forgetting_finding(ip.forgetting_recall(forgetting_accuracy()))
    for name, obj in (("phase", phase), ("depth", depth), ("order", order), ("forgetting", forgetting)):
        (tmp_path / f"{name}.json").write_text(json.dumps(obj))
    settings = json.dumps({"seed": 0, "analysis": {"topology": {"n_bootstrap": 50}}})
    argv = ["results", "findings", "--settings", settings, "--entity-evals", str(tmp_path / "entities.parquet"),
            "--phase-shift", str(tmp_path / "phase.json"), "--depth-trend", str(tmp_path / "depth.json"),
            "--out-json", str(tmp_path / "f.json"), "--out-md", str(tmp_path / "f.md")]
    assert main(argv) == 0
    assert not {"order", "forgetting"} & set(json.loads((tmp_path / "f.json").read_text()))
    assert "## Knowledge order" not in (tmp_path / "f.md").read_text()
    interplay = ["--order", str(tmp_path / "order.json"), "--forgetting", str(tmp_path / "forgetting.json")]
    assert main([*argv, *interplay]) == 0
    found = json.loads((tmp_path / "f.json").read_text())
    assert found["order"]["counts"] == order["counts"] and found["forgetting"]["corpora"] == forgetting["corpora"]
    md = (tmp_path / "f.md").read_text()
    assert "## Knowledge order" in md and "## Forgetting and replay" in md and "| city → major |" in md
    assert findings_markdown(found) == md


def test_forgetting_panels_follow_the_configured_corpora_and_group_order(figure_tables, tmp_path, monkeypatch):
    from kcircuits.studies.interplay import plots as fi

    root, paths = figure_tables
    drawn = []
    monkeypatch.setattr(fi, "finish", lambda plt, fig, pdf, png: drawn.append(
        ([ax.get_title() for ax in fig.axes], [ax.get_ylabel() for ax in fig.axes])))
    fi.plot_forgetting_recall(pd.read_parquet(paths["recall"]), ["low", "high"], ["other_entities", "conflicting"],
                              0.05, tmp_path / "r.pdf", tmp_path / "r.png")
    titles, labels = drawn[0]
    assert titles[:2] == ["other_entities", "conflicting"]  # config order, not alphabetical
    assert [label.split("\n")[0] for label in labels[::2]] == ["all facts", "low frequency", "high frequency"]
