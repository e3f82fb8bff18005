"""Document-memory summaries (kcircuits.studies.memory.summary), their findings section and figures, on
hand-made measure tables whose answers are known: which facts each point gets right is fixed by the
document and the fact's number, so every recall, gap, share, difference and verdict below is worked
out by hand.

The grid: 8 documents, hook layers 0 and 1, alpha 0 and 0.2, allocations partitioned and random, two
seeds. Random lets documents 0..3 share slots (overlap 0.5), partitioned shares nothing. Plain
training (alpha 0) gets facts 0..2 of the shared documents right and 0..6 of the exclusive ones (10
facts each): top-1 0.5, gap 0.7 - 0.3 = 0.4. Partitioned at alpha 0.2 is exactly plain; random at
alpha 0.2 gets facts 0..8 of every document right ("better": +0.4, gap 0), 0 only ("worse") or is
plain ("equal")."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from helpers import assert_figure_drawn_twice_alike
from kcircuits.figures.stage import all_figures
from kcircuits.studies.memory import summary as mem

FIGURES = all_figures()

DOCS, FACTS, SHARED = 8, 10, {0, 1, 2, 3}
MEMORY_FIGURES = {"memory_recall": ("recall", "interference"), "memory_layers": ("layers", "recall"),
                  "memory_locality": ("locality",)}


def right(alpha: float, allocation: str, doc: int, fact: int, mode: str) -> bool:
    plain = fact < (3 if doc in SHARED else 7)
    if alpha == 0 or allocation == "partitioned" or mode == "equal":
        return plain
    return fact < (9 if mode == "better" else 1)


def point_rows(lead: dict, mode: str) -> dict[str, list[dict]]:
    """Every measure table's rows of one point (lead: seed and the point's columns)."""
    alpha, alloc, layer = lead["alpha"], lead["allocation"], lead["hook_layer"]
    rows = {name: [] for name in ("facts", "paragraphs", "documents", "circuits", "generations")}
    for doc in range(DOCS):
        for j in range(FACTS):
            ok, sampled = float(right(alpha, alloc, doc, j, mode)), j < 4  # facts 0..3: knowledge neurons
            # sampled: 4 neurons, 2 (layer 0) or 1 (layer 1) in the hook layer; inside the slots: layer 0 only,
            # 1 of 2 at alpha 0, both at alpha 0.2
            kn = {"n_neurons": 4, "n_at_layer": 2 if layer == 0 else 1,
                  "n_inside": (2 if alpha else 1) if layer == 0 else 0} if sampled else {}
            rows["facts"].append({**lead, "doc": doc, "entity_id": doc, "type": "new", "freq_group": "high",
                                  "attribute": f"a{j}", "top1": ok, "hit_at_k": 1.0, "n_prompts": 2,
                                  **{k: float(kn.get(k, np.nan)) for k in ("n_neurons", "n_at_layer", "n_inside")}})
            rows["generations"].append({**lead, "prompt": f"p{doc}-{j}", "target": "x", "generations": ["x", "y"],
                                        "hits": int(ok), "success": ok, "rate": ok / 2, "doc": doc,
                                        "entity_id": doc, "attribute": f"a{j}"})
        for para in range(2):
            rows["paragraphs"].append({**lead, "doc": doc, "paragraph": para, "n_prefix": 5, "n_tokens": 10,
                                       "token_accuracy": 0.8 if alpha else 0.6, "exact": float(para == 0)})
        shared = alloc == "random" and doc in SHARED
        rows["documents"].append({**lead, "doc": doc, "n_slots": 8, "shares": int(shared),
                                  "overlap": 0.5 if shared else 0.0, "shared": shared,
                                  "slot_share": 0.4 if alpha else 0.1, "chance": 0.25})
    for budget in ("1000", "500"):  # edge counts, stored out of order: the summary orders budgets by value
        for group in ("high", "low"):
            for layer_, share in ((-1, 0.2), (0, 0.5), (1, 0.3)):  # 0.1 more of every share at budget 1000
                rows["circuits"].append({**lead, "task": "city", "type": "new", "freq_group": group, "budget": budget,
                                         "layer": layer_, "n_circuit_edges": 10, "n_graph_edges": 40,
                                         "ratio": share / 2, "edge_share": share + (0.1 if budget == "1000" else 0),
                                         "hit_at_k_mean": 0.5, "hit_at_k_zero": 0.4, "full_model_hit_at_k": 0.9})
    return rows


def measure_tables(mode: str = "better", seeds=(0, 1), alphas=(0.0, 0.2), models=("main",)) -> dict[str, pd.DataFrame]:
    tables: dict[str, list] = {}
    for seed, model, layer, alpha, alloc in itertools.product(seeds, models, (0, 1), alphas, ("partitioned", "random")):
        lead = {"seed": seed, "documents": DOCS, "model": model, "hook_layer": layer, "alpha": alpha,
                "allocation": alloc}
        for name, rows in point_rows(lead, mode).items():
            tables.setdefault(name, []).extend(rows)
    return {name: pd.DataFrame(rows) for name, rows in tables.items()}


def row(table: pd.DataFrame, **keys) -> pd.Series:
    part = table
    for k, v in keys.items():
        part = part[part[k] == v]
    assert len(part) == 1, keys
    return part.iloc[0]


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return mem.memory_tables(measure_tables(), 200, 0)


# ---- tables ------------------------------------------------------------------------------------------
def test_recall_and_its_difference_from_plain_training(tables):
    recall = tables["recall"]
    assert list(recall.columns) == mem.RECALL_COLUMNS and len(recall) == 8
    better = row(recall, hook_layer=0, alpha=0.2, allocation="random")
    assert better["top1"] == pytest.approx(0.9) and better["n_facts"] == 160 and better["n_seeds"] == 2
    assert better["top1_difference"] == pytest.approx(0.4) and better["n_paired"] == 160
    assert 0 < better["top1_difference_lo"] < 0.4 < better["top1_difference_hi"]
    assert better["token_accuracy"] == pytest.approx(0.8) and better["exact"] == pytest.approx(0.5)
    same = row(recall, hook_layer=1, alpha=0.2, allocation="partitioned")
    assert (same["top1_difference"], same["top1_difference_lo"], same["top1_difference_hi"]) == (0, 0, 0)
    plain = recall[recall["alpha"] == 0]
    assert np.allclose(plain["top1"], 0.5) and plain["top1_difference"].isna().all() and (plain["n_paired"] == 0).all()
    assert (recall["top1_lo"] <= recall["top1"]).all() and (recall["top1"] <= recall["top1_hi"]).all()
    # one plain model: the same interval at every hook layer and allocation
    assert plain["top1_lo"].nunique() == 1 and plain["exact_hi"].nunique() == 1


def test_interference_gap_by_hand_and_nan_without_shared_documents(tables):
    inter = tables["interference"]
    assert list(inter.columns) == mem.INTERFERENCE_COLUMNS
    plain = row(inter, hook_layer=0, alpha=0.0, allocation="random")
    assert plain["recall_shared"] == pytest.approx(0.3) and plain["recall_exclusive"] == pytest.approx(0.7)
    assert plain["gap"] == pytest.approx(0.4) and (plain["n_shared"], plain["n_exclusive"]) == (8, 8)  # 4 x 2 seeds
    assert np.isnan(plain["gap_change"])  # alpha 0 has nothing to compare with
    better = row(inter, hook_layer=0, alpha=0.2, allocation="random")
    assert better["gap"] == pytest.approx(0.0)  # 0.9 - 0.9
    # paired per document: exclusive +0.2, shared +0.6 -> -0.4, the same in every resample
    assert better["gap_change"] == pytest.approx(-0.4) and better["gap_change_hi"] == pytest.approx(-0.4)
    for alpha in (0.0, 0.2):
        part = row(inter, hook_layer=1, alpha=alpha, allocation="partitioned")
        assert part["n_shared"] == 0 and part["n_exclusive"] == 16 and part["recall_exclusive"] == pytest.approx(0.5)
        assert part[["recall_shared", "recall_shared_lo", "gap", "gap_lo", "gap_hi", "gap_change"]].isna().all()


def test_locality_shares_against_chance(tables):
    loc = tables["locality"]
    assert list(loc.columns) == mem.LOCALITY_COLUMNS
    at0 = row(loc, hook_layer=0, alpha=0.0, allocation="random")
    assert at0["neurons_inside"] == pytest.approx(0.5) and at0["neurons_at_layer"] == pytest.approx(0.5)
    assert at0["n_neuron_facts"] == 64 and at0["n_knowledge_neurons"] == 256  # 4 facts x 8 docs x 2 seeds, x 4
    assert at0["chance"] == pytest.approx(0.25) and at0["layer_chance"] == pytest.approx(0.5)  # layers 0, 1
    assert row(loc, hook_layer=0, alpha=0.2, allocation="partitioned")["neurons_inside"] == pytest.approx(1.0)
    deep = row(loc, hook_layer=1, alpha=0.2, allocation="random")
    assert deep["neurons_inside"] == 0 and deep["neurons_at_layer"] == pytest.approx(0.25)
    assert deep["slot_share"] == pytest.approx(0.4) and row(loc, hook_layer=1, alpha=0.0, allocation="random")[
        "slot_share"] == pytest.approx(0.1)


def test_layers_hold_the_hook_layers_edge_share_per_budget_in_order(tables):
    layers = tables["layers"]
    assert list(layers.columns) == mem.LAYERS_COLUMNS and len(layers) == 16
    part = layers[(layers["hook_layer"] == 0) & (layers["alpha"] == 0) & (layers["allocation"] == "random")]
    assert list(part["budget"]) == ["500", "1000"]  # by value, not as text, whatever the stored order
    assert np.allclose(part["edge_share"], [0.5, 0.6]) and (part["n_cells"] == 4).all()
    deep = row(layers, hook_layer=1, alpha=0.0, allocation="random", budget="500")
    assert deep["edge_share"] == pytest.approx(0.3) and deep["neurons_at_layer"] == pytest.approx(0.25)


def test_generation_success_and_rate(tables):
    gen = tables["generation"]
    assert list(gen.columns) == mem.GENERATION_COLUMNS
    better = row(gen, hook_layer=0, alpha=0.2, allocation="random")
    assert better["success"] == pytest.approx(0.9) and better["rate"] == pytest.approx(0.45)
    assert better["n_facts"] == 160
    assert row(gen, hook_layer=0, alpha=0.0, allocation="random")["success"] == pytest.approx(0.5)


def test_same_inputs_same_numbers_whatever_the_row_order(tables):
    shuffled = {k: t.sample(frac=1, random_state=3) for k, t in measure_tables().items()}
    again = mem.memory_tables(shuffled, 200, 0)
    for name, table in tables.items():
        pd.testing.assert_frame_equal(table, again[name], check_dtype=False)
    other = mem.memory_tables(measure_tables(), 200, 1)["recall"]
    assert not np.allclose(other["top1_lo"], tables["recall"]["top1_lo"])  # another seed, another resample


# ---- finding -----------------------------------------------------------------------------------------
def comparison(finding: dict, layer: int, allocation: str) -> dict:
    (c,) = [c for c in finding["comparisons"] if c["hook_layer"] == layer and c["allocation"] == allocation]
    return c


def test_finding_beats_with_plus_0_4_and_reduces_interference():
    finding = mem.memory_finding(measure_tables("better"), 200, 0)
    json.dumps(finding, allow_nan=False)  # JSON as it is
    assert finding["holds"] and finding["recall_verdict"] == "beats" and finding["interference_verdict"] == "reduced"
    c = comparison(finding, 0, "random")
    assert c["recall"]["difference"] == 0.4 and c["recall"]["verdict"] == "beats" and c["recall"]["plain"] == 0.5
    assert c["interference"]["change"] == -0.4 and c["interference"]["verdict"] == "reduced"
    p = comparison(finding, 1, "partitioned")
    assert p["recall"]["verdict"] == "no difference" and p["interference"]["verdict"] == "cannot be tested"
    assert finding["counts"]["recall"] == {"beats": 2, "worse": 0, "no difference": 2, "cannot be tested": 0}
    assert finding["best"]["allocation"] == "random" and finding["best"]["recall"]["difference"] == 0.4
    sweep = finding["layer_sweep"]
    assert sweep["budget"] == "500" and sweep["most"] == {
        "main/8": {"edge_share": 0, "ratio": 0, "neurons_at_layer": 0}}
    assert [e["edge_share"]["mean"] for e in sweep["layers"]] == [0.5, 0.3] and finding["seeds"] == [0, 1]
    assert "at 2 of 4 points" in finding["statement"] and "+0.400" in finding["statement"]


def test_finding_equal_recall_is_no_difference_and_does_not_hold():
    finding = mem.memory_finding(measure_tables("equal"), 200, 0)
    assert not finding["holds"] and finding["recall_verdict"] == "no difference"
    assert finding["verdict"] == "not supported: recall no difference, interference no difference"
    assert comparison(finding, 0, "random")["interference"]["change"] == 0.0


def test_finding_worse_recall():
    finding = mem.memory_finding(measure_tables("worse"), 200, 0)
    c = comparison(finding, 1, "random")
    assert c["recall"]["difference"] == -0.4 and c["recall"]["verdict"] == "worse"
    assert finding["recall_verdict"] == "worse" and finding["counts"]["recall"]["worse"] == 2
    # everyone fell, the shared documents less (-0.2 against -0.6): the gap closes by levelling down
    assert c["interference"]["change"] == -0.4 and finding["verdict"] == "holds: some alpha > 0 reduces interference"


def test_too_few_documents_in_a_group_fall_back_to_the_sharing_cost_against_partitioned():
    finding = mem.memory_finding(measure_tables("better", seeds=(0,)), 200, 0)  # 4 shared, 4 exclusive
    c = comparison(finding, 0, "random")
    assert (c["interference"]["n_shared"], c["interference"]["n_exclusive"]) == (4, 4) < (mem.MIN_GROUP,) * 2
    # partitioned at alpha 0.2 is plain (0.5), random gets 0.9: sharing costs -0.4, i.e. helps, for every fact
    cost = c["interference"]["sharing_cost"]
    assert c["interference"]["test"] == "sharing cost" and cost["cost"] == -0.4 and cost["interval_95"][1] < 0
    assert c["interference"]["verdict"] == "reduced" and c["recall"]["verdict"] == "beats"
    alone = comparison(finding, 0, "partitioned")["interference"]  # no shared documents, nothing to compare with
    assert alone["sharing_cost"] is None and alone["test"] is None and alone["verdict"] == "cannot be tested"
    table = mem.memory_tables(measure_tables("equal", seeds=(0,)), 200, 0)["interference"]
    assert (table[table["allocation"] == "random"]["cost"] == 0).all()  # the same recall: no cost


def test_a_point_without_its_plain_counterpart_cannot_be_compared():
    inputs = measure_tables("better")
    facts = inputs["facts"]
    inputs["facts"] = facts[(facts["alpha"] > 0) | (facts["allocation"] != "partitioned")]
    finding = mem.memory_finding(inputs, 100, 0)
    c = comparison(finding, 0, "partitioned")
    assert c["recall"]["plain"] is None and c["recall"]["difference"] is None and c["recall"]["n_paired"] == 0
    assert c["recall"]["verdict"] == "cannot be tested" and finding["counts"]["recall"]["cannot be tested"] == 2
    assert comparison(finding, 0, "random")["recall"]["verdict"] == "beats" and finding["recall_verdict"] == "beats"


def test_finding_without_alpha_above_0_cannot_be_tested():
    finding = mem.memory_finding(measure_tables(alphas=(0.0,)), 50, 0)
    assert finding["comparisons"] == [] and finding["best"] is None and not finding["holds"]
    assert finding["recall_verdict"] == "cannot be tested" and finding["statement"].startswith("Not tested")
    assert [e["hook_layer"] for e in finding["layer_sweep"]["layers"]] == [0, 1]


def test_each_model_is_compared_with_its_own_plain_training_and_layers():
    tables = measure_tables(models=("main", "wide"))
    wide = tables["circuits"]["model"] == "wide"
    tables["circuits"] = pd.concat([tables["circuits"], tables["circuits"][wide].assign(layer=3)])  # a 4-layer model
    tables["facts"].loc[tables["facts"]["model"] == "wide", "top1"] = 0.0  # it recalls nothing
    finding = mem.memory_finding(tables, 50, 0)
    by_model = {m: [c for c in finding["comparisons"] if c["model"] == m] for m in ("main", "wide")}
    assert len(by_model["main"]) == len(by_model["wide"]) == 4
    assert all(c["recall"]["difference"] == 0 for c in by_model["wide"])  # against its own alpha = 0
    assert any(c["recall"]["difference"] > 0 for c in by_model["main"])
    loc = mem.memory_tables(tables, 50, 0)["locality"]
    assert set(loc.loc[loc["model"] == "main", "layer_chance"]) == {0.5}
    assert set(loc.loc[loc["model"] == "wide", "layer_chance"]) == {0.25}
    assert sorted(finding["layer_sweep"]["most"]) == ["main/8", "wide/8"]


def test_markdown_section_and_findings_registry():
    from kcircuits.analysis import report_stage
    from kcircuits.cli import build_parser

    md = mem.memory_markdown(mem.memory_finding(measure_tables("better"), 200, 0))
    text = "\n".join(md)
    assert md[0] == "## Document memory" and "Verdict: holds:" in text
    assert "| 8 | main | 0 | random | 0.2 | 0.900 | 0.500 | +0.400 [+0." in text
    assert "| -0.400 [-0.400, -0.400] | -0.400 [-0." in text and "] | reduced |" in text  # gap change, sharing cost
    assert ("| 8 | main | 1 | partitioned | 0.2 | 0.500 | 0.500 | +0.000 [+0.000, +0.000] | no difference "
            "| n/a | n/a | n/a | cannot be tested |") in text
    assert "| 8 | main | 1 | 0.300 [0.300, 0.300] | 0.150 [0.150, 0.150] | 0.250 [0.250, 0.250] |" in text
    assert mem.memory_markdown(None)[2].startswith("Not tested")
    study, markdown = report_stage.study_findings()["memory"]
    assert study.name == "memory" and study.function(markdown) is mem.memory_markdown
    args = build_parser().parse_args(["results", "findings", "--settings", "{}", "--entity-evals", "e.parquet",
                                      "--phase-shift", "p.json", "--depth-trend", "d.json", "--out-json", "f.json",
                                      "--out-md", "f.md", "--memory", "summary.json"])
    assert args.memory == "summary.json"


# ---- figures -----------------------------------------------------------------------------------------
def test_the_memory_figures_have_entries_and_captions():
    assert [n for n, f in FIGURES.items() if f.stage == "memory"] == list(MEMORY_FIGURES)
    for name, inputs in MEMORY_FIGURES.items():
        figure = FIGURES[name]
        assert list(figure.inputs) == list(inputs)  # the command's options, in order
        assert figure.inputs == {option: f"memory_summary_{option}" for option in inputs}  # the PATHS keys
        assert figure.category == "Document memory" and figure.enabled == "memory.enabled"
        assert figure.sections == {"memory": ["allocations"], "circuits": ["edge_budgets"]}
        assert figure.caption.parent.parent.name == "memory"
        caption = figure.caption.read_text(encoding="utf-8")
        assert 'snakemake.config["memory"]' in caption


SETTINGS = json.dumps({"seed": 0, "memory": {"allocations": ["random", "partitioned", "simset-2"]},
                       "circuits": {"edge_budgets": [500, 1000]}})


@pytest.fixture(scope="module")
def figure_tables(tmp_path_factory, tables):
    root = tmp_path_factory.mktemp("memory")
    for name, table in tables.items():
        table.to_parquet(root / f"{name}.parquet")
    pd.DataFrame({"entity_id": [0, 1], "freq_group": ["low", "high"]}).to_parquet(root / "entities.parquet")
    return root


@pytest.mark.parametrize("name", list(MEMORY_FIGURES))
def test_memory_figures_are_written_and_reproducible(figure_tables, name, tmp_path):
    argv = ["figure", name, "--settings", SETTINGS, "--entities", str(figure_tables / "entities.parquet")]
    for option in MEMORY_FIGURES[name]:
        argv += [f"--{option}", str(figure_tables / f"{option}.parquet")]
    assert_figure_drawn_twice_alike(argv, tmp_path)


def test_recall_figure_lines_follow_the_settings_order(tables, tmp_path, monkeypatch):
    from kcircuits.studies.memory import plots as fm

    drawn = []
    monkeypatch.setattr(fm, "finish", lambda plt, fig, pdf, png: (drawn.append(fig), plt.close(fig)))
    fm.plot_memory_recall(tables["recall"], tables["interference"], ["random", "partitioned"], tmp_path / "a.pdf",
                          tmp_path / "a.png")
    top, bottom = drawn[0].axes[0], drawn[0].axes[2]  # row-major: recall row, then interference row (2 layers)
    assert top.get_title() == "hook layer 0"
    assert [list(c.lines[0].get_ydata()) for c in top.containers] == [[0.5, 0.9], [0.5, 0.5]]  # random, partitioned
    costs = [c.lines[0].get_ydata() for c in bottom.containers]
    assert np.allclose(costs[0], [0.0, -0.4]) and np.isnan(costs[1]).all()  # 0.5 - 0.9; partitioned: no cost
    alone = {k: t[t["allocation"] == "partitioned"] for k, t in tables.items()}
    fm.plot_memory_recall(alone["recall"], alone["interference"], ["partitioned"], tmp_path / "b.pdf",
                          tmp_path / "b.png")
    bottom = drawn[1].axes[2]
    assert all(np.isnan(c.lines[0].get_ydata()).all() for c in bottom.containers)
    assert "shares slots" in bottom.texts[0].get_text()


def test_layers_figure_needs_plain_training(tables, tmp_path):
    from kcircuits.studies.memory.plots import plot_memory_layers

    layers = tables["layers"]
    with pytest.raises(ValueError, match="alpha = 0"):
        plot_memory_layers(layers[layers["alpha"] > 0], tables["recall"], ["random"], "500", tmp_path / "a.pdf",
                           tmp_path / "a.png")
