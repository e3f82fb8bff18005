"""The circuits of theta' in the RECKONING summary (kcircuits.studies.reckoning.circuit_summary): the finding's
numbers on hand-made comparison tables (two seeds, both encoded methods, two tasks, four continual
cells including an empty circuit, and a decoy budget that must be ignored), its findings.md
subsection and the reckoning_circuits figure."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import assert_figure_drawn_twice_alike
from kcircuits.figures.stage import all_figures
from kcircuits.studies.reckoning import summary as rk
from kcircuits.studies.reckoning.circuit_summary import reckoning_circuit_markdown

FIGURES = all_figures()

N = 4  # trained inner steps
METHODS = ["reckoning", "reckoning_mt", "ft_icr", "no_facts", "random_facts"]


# ---- circuits of theta' ------------------------------------------------------------------------------
BUDGET, TASKS = "0.1", ["city", "company"]
CELLS = [("new", "high"), ("new", "low"), ("revised", "low"), ("revised", "high")]  # the last: an empty circuit
# seed 0, city: each method's Jaccard with the first three cells (seed 1: +0.1; company: half)
JACCARD = {"reckoning": [0.2, 0.1, 0.3], "reckoning_mt": [0.5, 0.2, 0.2]}
CELL_LAYER, CELL_HIT = [2.0, 1.0, 3.0], [0.8, 0.4, 0.6]  # pre-trained (company: layer + 1; mean ablation: hit / 2)
ENCODED_LAYER = {"reckoning": (4.0, 5.0), "reckoning_mt": (1.0, 1.0)}  # per seed 0, 1 (both tasks)
ENCODED_HIT = {"reckoning": (0.4, 0.6), "reckoning_mt": (0.9, 0.9)}  # zero ablation (mean ablation: 0.3 less)
FULL_MODEL = {"reckoning": (0.95, 0.85), "reckoning_mt": (1.0, 1.0)}


def _circuit_rows(seed: int, method: str, task: str, budget: str) -> tuple[list, list, list]:
    junk, half, lead = budget != BUDGET, 0.5 if task == "company" else 1.0, {"seed": seed, "method": method}
    cell = {**lead, "task": task, "budget": budget, "source": "encoded", "type": "new", "freq_group": "encoded"}
    compare = [{**cell, "n_edges": 100, "jaccard_with_encoded": 1.0, "mean_layer": 9.0 if junk else
                ENCODED_LAYER[method][seed]}]
    hits = [{**cell, "ablation": a, "hit_at_k": 0.0 if junk else ENCODED_HIT[method][seed] - less, "n_edges": 100,
             "mean_rank": 2.0, "n_prompts": 24, "full_model_hit_at_k": FULL_MODEL[method][seed], "n_entities": 24,
             "n_pairs": 20} for a, less in (("zero", 0.0), ("mean", 0.3))]
    layers = [{**cell, "layer": layer, "n_circuit_edges": 1, "n_graph_edges": 10,
               "ratio": 0.1 * (layer + 2) if method == "reckoning" else 0.5} for layer in range(-1, 3)]
    for i, (etype, group) in enumerate(CELLS):
        cell = cell | {"source": "continual", "type": etype, "freq_group": group}
        empty = i == len(CELLS) - 1
        compare.append({**cell, "n_edges": 0 if empty else 80, "jaccard_with_encoded": np.nan if empty else
                        0.99 if junk else half * (JACCARD[method][i] + 0.1 * seed),
                        "mean_layer": np.nan if empty else CELL_LAYER[i] + (task == "company")})
        layers += [{**cell, "layer": layer, "n_circuit_edges": 0, "n_graph_edges": 10,
                    "ratio": 0.0 if empty else 0.1 * (i + 1)} for layer in range(-1, 3)]
        hits += [] if empty else [{**{k: cell[k] for k in [*lead, "task", "type", "freq_group", "budget"]},
                                   "ablation": a, "hit_at_k": CELL_HIT[i] / div, "source": "continual"}
                                  for a, div in (("zero", 1), ("mean", 2))]
    return compare, layers, hits


def circuit_tables() -> dict[str, pd.DataFrame]:
    """compare / layers / hits as the summary job concatenates them (budget "5": values to be ignored)."""
    out = {"compare": [], "layers": [], "hits": []}
    for seed in (0, 1):
        for method in rk.ENCODED:
            for task in TASKS:
                for budget in (BUDGET, "5"):
                    for name, rows in zip(out, _circuit_rows(seed, method, task, budget)):
                        out[name] += rows
    return {name: pd.DataFrame(rows) for name, rows in out.items()}


@pytest.fixture(scope="module")
def circuits() -> dict[str, pd.DataFrame]:
    return circuit_tables()


def test_circuit_finding_numbers_by_hand(circuits):
    c = rk.reckoning_circuit_finding(circuits["compare"], circuits["hits"], BUDGET, 10)
    json.dumps(c)
    assert c["measured"] and c["methods"] == ["reckoning", "reckoning_mt"] and c["tasks"] == TASKS
    assert c["seeds"] == [0, 1] and c["budget"] == BUDGET and c["k"] == 10 and list(c["by_task"]) == [*TASKS, "all"]
    r = c["by_task"]["city"]["reckoning"]  # seed 0: cells 0.2, 0.1, 0.3 (and NaN); seed 1: 0.3, 0.2, 0.4
    assert r["jaccard"] == {"mean": pytest.approx(0.25), "max": pytest.approx(0.35), "closest_cell": "revised/low"}
    assert r["mean_layer"] == {"encoded": 4.5, "continual": 2.0}  # the empty cell's NaN left out
    assert r["hit_at_k"]["zero"] == {"encoded": pytest.approx(0.5), "continual": pytest.approx(0.6)}
    assert r["hit_at_k"]["mean"] == {"encoded": pytest.approx(0.2), "continual": pytest.approx(0.3)}
    assert r["full_model_hit_at_k"] == pytest.approx(0.9) and r["n_edges"] == 100 and r["n_cells"] == 4
    assert r["n_seeds"] == 2
    mt = c["by_task"]["company"]["reckoning_mt"]  # half of seed 0: 0.5, 0.2, 0.2; seed 1: 0.6, 0.3, 0.3
    assert mt["jaccard"] == {"mean": pytest.approx(0.175), "max": pytest.approx(0.275), "closest_cell": "new/high"}
    assert mt["mean_layer"] == {"encoded": 1.0, "continual": 3.0} and mt["full_model_hit_at_k"] == 1.0
    pooled = c["by_task"]["all"]["reckoning"]  # the tasks within a seed, then the seeds
    assert pooled["jaccard"]["mean"] == pytest.approx((0.25 + 0.125) / 2)
    assert pooled["jaccard"]["max"] == pytest.approx((0.35 + 0.175) / 2)
    assert pooled["mean_layer"] == {"encoded": 4.5, "continual": 2.5}
    assert c["method"] == "reckoning_mt" and c["statement"].startswith("With reckoning_mt's theta' (edge budget 0.1)")
    assert "city sits shallower (mean layer 1.00 vs 2.00)" in c["statement"] and "Jaccard of 0.350" in c["statement"]
    assert c == rk.reckoning_circuit_finding(circuits["compare"].sample(frac=1, random_state=3),
                                             circuits["hits"].sample(frac=1, random_state=4), BUDGET, 10)


def test_circuit_finding_of_one_method_and_without_hits(circuits):
    compare = circuits["compare"][circuits["compare"]["method"] == "reckoning"]
    c = rk.reckoning_circuit_finding(compare, circuits["hits"].iloc[:0], BUDGET, 5)
    assert c["methods"] == ["reckoning"] and c["method"] == "reckoning"
    block = c["by_task"]["city"]["reckoning"]
    assert block["hit_at_k"] == {a: {"encoded": None, "continual": None} for a in ("zero", "mean")}
    assert block["full_model_hit_at_k"] is None and "sits deeper (mean layer 4.50 vs 2.00)" in c["statement"]
    assert "Hit@" not in c["statement"]


@pytest.mark.parametrize("compare, hits, budget", [(pd.DataFrame(), pd.DataFrame(), BUDGET), (None, None, BUDGET),
                                                   ("compare", "hits", "0.25")])
def test_circuit_finding_says_nothing_was_measured(circuits, compare, hits, budget):
    compare, hits = (circuits[t] if isinstance(t, str) else t for t in (compare, hits))
    c = rk.reckoning_circuit_finding(compare, hits, budget, 10)
    json.dumps(c)
    assert not c["measured"] and c["by_task"] == {} and c["method"] is None and "Not measured" in c["statement"]
    assert reckoning_circuit_markdown(c) == ["### Circuits of theta'", "", c["statement"], ""]


def test_markdown_circuits_subsection(circuits):
    finding = rk.reckoning_finding(pd.DataFrame(columns=["seed", "method", "context_id", "entity_id", "distractors",
                                                          "attribute", "hops", "steps", "exact", "first_rank"]),
                                   N, n_bootstrap=50, seed=0)
    assert "### Circuits of theta'" not in rk.reckoning_markdown(finding)
    finding["circuits"] = rk.reckoning_circuit_finding(circuits["compare"], circuits["hits"], BUDGET, 10)
    md = rk.reckoning_markdown(finding)
    assert md.index("### Circuits of theta'") > md.index("## RECKONING") and md[-1] == ""
    text = "\n".join(md)
    row = "| city | reckoning | 0.250 (0.350, revised/low) | 4.50 / 2.00 | 0.500 / 0.600 | 0.200 / 0.300 | 0.900 | 2 |"
    assert row in text
    assert "| all | reckoning_mt |" in text and "Hit@10 zero ablation" in text


def test_figure_curves_and_bars(circuits):
    from kcircuits.studies.reckoning import plots as fr

    curves = fr.circuit_layer_curves(circuits["layers"], BUDGET).set_index(["task", "series", "layer"])
    pre = curves.loc[("city", fr.PRETRAINED, 0)]  # cells 0.1, 0.2, 0.3 and the empty one 0
    assert (pre["ratio"], pre["low"], pre["high"]) == pytest.approx((0.15, 0.0, 0.3))
    assert curves.loc[("company", "reckoning", 2), "ratio"] == pytest.approx(0.4)
    bars = fr.circuit_hit_bars(circuits["hits"], BUDGET, ["low", "high"])
    city = bars[bars["task"] == "city"]
    assert list(city["bar"]) == ["reckoning", "reckoning_mt", "new/low", "new/high", "revised/low"]
    assert list(city["hit_at_k"]) == pytest.approx([0.5, 0.9, 0.4, 0.8, 0.6])
    full = city["full_model_hit_at_k"]  # theta''s own: the encoded bars only
    assert list(full.iloc[:2]) == pytest.approx([0.9, 1.0]) and full.iloc[2:].isna().all()
    with pytest.raises(ValueError, match="budgets present"):
        fr.circuit_layer_curves(circuits["layers"], "0.25")


def test_circuits_figure_is_registered_written_and_reproducible(circuits, tmp_path):
    figure = FIGURES["reckoning_circuits"]
    assert figure.stage == "reckoning" and list(figure.inputs) == ["layers", "hits", "compare"]
    assert figure.inputs == {"layers": "reckoning_summary_circuit_layers", "hits": "reckoning_summary_circuit_hits",
                             "compare": "reckoning_summary_circuit_compare"}
    assert figure.enabled == "reckoning.enabled" and figure.caption.parent.parent.name == "reckoning"
    assert 'snakemake.config["reckoning"]' in figure.caption.read_text(encoding="utf-8")
    argv = ["figure", "reckoning_circuits", "--entities", str(tmp_path / "entities.parquet"), "--settings",
            json.dumps({"seed": 0, "reckoning": {"methods": METHODS, "inner": {"steps": N}},
                        "circuits": {"edge_budgets": [0.1, 5], "hit_k": 10},
                        "circuit_pairs": {"tasks": {"company": "{name} works for", "city": "{name} lives in"}}})]
    pd.DataFrame({"entity_id": [0, 1], "freq_group": ["high", "low"], "frequency": [50, 2]}).to_parquet(argv[3])
    for name, table in circuits.items():
        table.to_parquet(tmp_path / f"{name}.parquet")
        argv += [f"--{name}", str(tmp_path / f"{name}.parquet")]
    assert_figure_drawn_twice_alike(argv, tmp_path)
