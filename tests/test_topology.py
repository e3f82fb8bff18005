"""Circuit topology across checkpoints: hand-made circuits with known Jaccard, layer ratios and mean
layer; phase-shift fits on curves with a known breakpoint (and on straight lines); deterministic
bootstrap intervals; the stage CLI end to end on stored files; figures; the rules' DAG."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import checkpoint_meta, snakemake
from kcircuits.analysis.topology import (
    CheckpointCircuits,
    edge_mask,
    jaccard,
    layer_ratios,
    mean_layer,
    topology_tables,
)
from kcircuits.analysis.topology_stage import depth_trend_table, phase_shift_summary, phase_shift_table
from kcircuits.analysis.trends import bootstrap_slope, fit_two_segments, phase_shift, trend_verdict
from kcircuits.circuits.graph import Circuit, Graph
from kcircuits.circuits.store import circuits_frame, save_scores
from kcircuits.cli import main

G = Graph(2, 2)  # forward: input a0.h0 a0.h1 m0 a1.h0 a1.h1 m1; 46 edges
# Three checkpoints of one cell (edge -> score); epoch 2 is the final one.
E0 = {("input", "m0"): 1.0, ("m0", "logits"): 1.0}
E1 = {("input", "m0"): 1.0, ("m0", "logits"): -3.0, ("input", "a1.h0<q>"): 2.0, ("a1.h0", "logits"): 2.0}
E2 = {("input", "a1.h0<q>"): 1.0, ("a1.h0", "logits"): 1.0, ("input", "logits"): 1.0}
CELL, EMPTY = "city/new/high", "city/revised/high"  # EMPTY: scored, but its circuit pruned to nothing


def rows(edges: dict) -> pd.DataFrame:
    return pd.DataFrame([{"parent": p, "child": c, "score": s} for (p, c), s in edges.items()])


def settings(budgets=(3, 0.5), n_bootstrap=500) -> dict:
    return {"seed": 0, "analysis": {"topology": {"phase_shift": {"min_gain": 0.5, "min_points": 5, "alpha": 0.05},
                                                 "n_bootstrap": n_bootstrap, "heatmap_cell": None}},
            "circuits": {"edge_budgets": list(budgets), "ablations": ["zero", "mean"], "hit_k": 10}}


# ---- per-circuit quantities ------------------------------------------------------------------------
def test_jaccard_of_hand_made_circuits():
    a, _ = edge_mask(G, rows(E1))
    b, _ = edge_mask(G, rows(E2))
    assert jaccard(a, b) == pytest.approx(2 / 5)  # shared: input->a1.h0<q>, a1.h0->logits
    # nodes: {input, m0, a1.h0, logits} vs {input, a1.h0, logits}
    assert jaccard(Circuit(G, a).nodes, Circuit(G, b).nodes) == pytest.approx(3 / 4)
    assert jaccard(a, a) == 1.0
    assert math.isnan(jaccard(torch.zeros_like(a), torch.zeros_like(a)))


def test_mean_layer_is_score_weighted_parent_layer():
    edges, scores = edge_mask(G, rows(E1))
    # |score| 1 at input (-1), 3 at m0 (0), 2 at input (-1), 2 at a1.h0 (1) -> (-1 - 2 + 2) / 8
    assert mean_layer(G, edges, scores) == pytest.approx(-1 / 8)
    top, s_top = edge_mask(G, rows({("m1", "logits"): 5.0}))
    assert mean_layer(G, top, s_top) == 1.0
    assert math.isnan(mean_layer(G, torch.zeros_like(edges), scores))


def test_layer_ratios_count_edges_by_parent_layer():
    edges, _ = edge_mask(G, rows(E1))
    table = layer_ratios(G, edges).set_index("layer")
    # all graph edges: the input feeds all 15 slots; layer 0: 2 heads x 9 + m0 x 8; layer 1: 2 x 2 + 1
    assert table["n_graph_edges"].to_dict() == {-1: 15, 0: 26, 1: 5}
    assert table["n_graph_edges"].sum() == G.n_edges
    assert table["n_circuit_edges"].to_dict() == {-1: 2, 0: 1, 1: 1}
    assert table["ratio"].tolist() == pytest.approx([2 / 15, 1 / 26, 1 / 5])


def test_edge_not_in_the_graph_is_refused():
    bad, _ = edge_mask(G, rows({("m1", "a0.h0<q>"): 1.0}))  # a later node cannot feed an earlier slot
    with pytest.raises(ValueError):
        Circuit(G, bad)


# ---- across checkpoints, through the stored files and the CLI ---------------------------------------
def write_checkpoint(folder, name, epoch, edges: dict, seed=0):
    """scores.safetensors + circuits.parquet as the circuits stage writes them (budget '3' only)."""
    meta = checkpoint_meta(seed, name, float(epoch), int(10 * epoch))
    folder.mkdir(parents=True)
    scores = {CELL: torch.zeros(G.n_forward, G.n_backward), EMPTY: torch.zeros(G.n_forward, G.n_backward)}
    for (p, c), s in edges.items():
        scores[CELL][G.forward_names.index(p), G.backward_names.index(c)] = s
    save_scores(folder / "scores.safetensors", scores, G, {"checkpoint": meta})
    mask, _ = edge_mask(G, rows(edges))
    frame = circuits_frame({CELL: Circuit(G, mask), EMPTY: Circuit.empty(G)}, scores).assign(budget="3")
    frame.assign(**meta)[list(meta) + list(frame.columns)].to_parquet(folder / "circuits.parquet")
    return folder


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("topology")
    folders = [write_checkpoint(root / n, n, e, x) for n, e, x in
               (("epoch-002", 2, E2), ("epoch-000", 0, E0), ("epoch-001", 1, E1))]  # not in training order
    out = {"topology": root / "topology.parquet", "layers": root / "layers.parquet"}
    assert main(["topology", "tables", "--settings", json.dumps(settings()), "--seed", "0",
                 "--scores", *[str(f / "scores.safetensors") for f in folders],
                 "--circuits", *[str(f / "circuits.parquet") for f in folders],
                 "--out-topology", str(out["topology"]), "--out-layers", str(out["layers"])]) == 0
    return {k: pd.read_parquet(v) for k, v in out.items()} | {"root": root}


def test_topology_table_known_values(tables):
    t = tables["topology"]
    cell = t[(t["type"] == "new") & (t["budget"] == "3")].sort_values("order")
    assert cell["checkpoint"].tolist() == ["epoch-000", "epoch-001", "epoch-002"]  # by epoch, not file order
    assert cell["epoch"].tolist() == [0.0, 1.0, 2.0] and (cell["seed"] == 0).all()
    assert cell["n_edges"].tolist() == [2, 4, 3] and cell["n_nodes"].tolist() == [3, 4, 3]
    assert cell["edge_jaccard_final"].tolist() == pytest.approx([0.0, 2 / 5, 1.0])
    assert cell["node_jaccard_final"].tolist() == pytest.approx([2 / 4, 3 / 4, 1.0])
    assert math.isnan(cell["edge_jaccard_prev"].iloc[0]) and math.isnan(cell["node_jaccard_prev"].iloc[0])
    assert cell["edge_jaccard_prev"].iloc[1:].tolist() == pytest.approx([2 / 4, 2 / 5])
    assert cell["node_jaccard_prev"].iloc[1:].tolist() == pytest.approx([3 / 4, 3 / 4])
    assert cell["mean_layer"].tolist() == pytest.approx([-0.5, -1 / 8, -1 / 3])
    p = np.array([1, 3, 2, 2]) / 8
    assert cell["edge_entropy"].iloc[1] == pytest.approx(float(-(p * np.log(p)).sum()))


def test_empty_circuits_are_rows_with_zero_edges(tables):
    t = tables["topology"]
    empty = t[(t["type"] == "revised") | (t["budget"] == "0.5")]  # pruned-away cell; budget without rows
    assert len(empty) == 3 * 3 and (empty["n_edges"] == 0).all() and (empty["n_nodes"] == 0).all()
    assert empty[["mean_layer", "edge_entropy", "edge_jaccard_final"]].isna().all().all()


def test_layers_table(tables):
    lay = tables["layers"]
    one = lay[(lay["checkpoint"] == "epoch-001") & (lay["type"] == "new") & (lay["budget"] == "3")]
    assert one.set_index("layer")["ratio"].to_dict() == pytest.approx({-1: 2 / 15, 0: 1 / 26, 1: 1 / 5})
    assert len(lay) == 3 * 2 * 2 * 3  # checkpoints x cells x budgets x layers (input, 0, 1)


def test_tables_refuse_another_seeds_checkpoints(tmp_path):
    f = write_checkpoint(tmp_path / "epoch-000", "epoch-000", 0, E0, seed=1)
    with pytest.raises(ValueError, match="seed"):
        main(["topology", "tables", "--settings", json.dumps(settings()), "--seed", "0", "--scores",
              str(f / "scores.safetensors"), "--circuits", str(f / "circuits.parquet"),
              "--out-topology", str(tmp_path / "t.parquet"), "--out-layers", str(tmp_path / "l.parquet")])


def test_in_memory_tables_match_for_any_input_order():
    def ck(name, epoch, edges):
        meta = {"checkpoint": name, "phase": "continual", "epoch": epoch, "global_step": epoch, "tokens_seen": 0}
        return CheckpointCircuits(meta, G, [CELL], rows(edges).assign(budget="3", task="city", type="new",
                                                                      freq_group="high"))
    cks = [ck("epoch-000", 0, E0), ck("epoch-001", 1, E1), ck("epoch-002", 2, E2)]
    a, _ = topology_tables(cks, ["3"], seed=4)
    b, _ = topology_tables(cks[::-1], ["3"], seed=4)
    pd.testing.assert_frame_equal(a, b)


# ---- phase shift -----------------------------------------------------------------------------------
KNEE_X = np.arange(11.0)


def knee(x, at, before=0.02, after=0.2):
    return np.where(x <= at, before * x, before * at + after * (x - at))


def test_two_segment_fit_recovers_a_known_breakpoint():
    fit = fit_two_segments(KNEE_X, knee(KNEE_X, 6))
    assert fit["breakpoint"] == 6.0 and fit["index"] == 6
    assert fit["slope_before"] == pytest.approx(0.02) and fit["slope_after"] == pytest.approx(0.2)
    noisy = knee(KNEE_X, 4) + np.random.default_rng(3).normal(0, 0.02, len(KNEE_X))
    res = phase_shift(KNEE_X, noisy, 0.5, 5, 0.05, 500, np.random.default_rng(0))
    assert res["breakpoint"] == 4.0 and res["phase_shift"] and res["gain"] > 0.9 and res["p_value"] < 0.01


def test_straight_line_has_no_phase_shift():
    exact = phase_shift(KNEE_X, 0.3 + 0.05 * KNEE_X, 0.5, 5, 0.05, 500, np.random.default_rng(0))
    assert exact["gain"] == 0.0 and not exact["phase_shift"] and exact["line_slope"] == pytest.approx(0.05)
    flat = phase_shift(KNEE_X, np.full(11, 0.7), 0.5)
    assert flat["gain"] == 0.0 and not flat["phase_shift"]
    noisy = 0.05 * KNEE_X + np.random.default_rng(1).normal(0, 0.05, 11)
    res = phase_shift(KNEE_X, noisy, 0.5, 5, 0.05, 500, np.random.default_rng(0))
    assert not res["phase_shift"] and res["p_value"] > 0.05


def test_too_few_checkpoints_report_no_phase_shift():
    x = np.arange(4.0)
    assert not phase_shift(x, knee(x, 1, 0.0, 1.0), 0.5, min_points=5)["phase_shift"]


def fake_topology(breakpoints: dict[int, float]) -> tuple[pd.DataFrame, dict]:
    """Two seeds x two cells: edge Jaccard to final with a knee at the seed's breakpoint; flat Hit@k."""
    topo, hits = [], {}
    for seed, at in breakpoints.items():
        h = []
        for etype in ("new", "revised"):
            noise = np.random.default_rng([seed, len(etype)]).normal(0, 0.01, len(KNEE_X))
            topo.append(pd.DataFrame({"seed": seed, "checkpoint": [f"epoch-{int(e):03d}" for e in KNEE_X],
                                      "epoch": KNEE_X, "task": "city", "type": etype, "freq_group": "high",
                                      "budget": "0.1", "edge_jaccard_final": knee(KNEE_X, at) + noise,
                                      "mean_layer": 3 - 0.1 * KNEE_X + noise}))
            for ablation in ("zero", "mean"):
                h.append(pd.DataFrame({"checkpoint": [f"epoch-{int(e):03d}" for e in KNEE_X], "epoch": KNEE_X,
                                       "task": "city", "type": etype, "freq_group": "high", "budget": "0.1",
                                       "target_type": etype, "target_freq_group": "high", "ablation": ablation,
                                       "hit_at_k": 0.4 + 0.03 * KNEE_X}))
        hits[seed] = pd.concat(h, ignore_index=True)
    return pd.concat(topo, ignore_index=True), hits


def test_phase_shift_across_seeds():
    cfg = {**settings()["analysis"]["topology"], "budgets": ["0.1"], "ablation": "zero", "hit_k": 10}
    topo, hits = fake_topology({0: 4.0, 1: 6.0})
    table = phase_shift_table(topo, hits, cfg, seed=0)
    assert len(table) == 2 * 2 * 2  # seeds x cells x curves
    jac = table[table["curve"] == "edge_jaccard_final"]
    assert jac["phase_shift"].all()
    assert dict(zip(jac["seed"], jac["breakpoint_epoch"])) == {0: 4.0, 1: 6.0}
    assert set(jac["breakpoint_checkpoint"]) == {"epoch-004", "epoch-006"}
    assert not table[table["curve"] == "hit_at_10"]["phase_shift"].any()  # straight Hit@k lines
    summary = phase_shift_summary(table, cfg, seed=0)
    across = summary["curves"]["edge_jaccard_final"]["breakpoint_epoch_across_seeds"]
    assert (across["median"], across["min"], across["max"], across["n_seeds"]) == (5.0, 4.0, 6.0, 2)
    assert 4.0 <= across["interval_95"][0] <= across["interval_95"][1] <= 6.0
    assert summary["curves"]["hit_at_10"]["verdict"].startswith("no phase shift found")
    assert summary["curves"]["hit_at_10"]["breakpoint_epoch_across_seeds"]["interval_95"] is None
    assert phase_shift_summary(phase_shift_table(topo, hits, cfg, seed=0), cfg, seed=0) == summary  # deterministic


# ---- deep-to-shallow ---------------------------------------------------------------------------------
def test_bootstrap_is_deterministic_and_covers_the_slope():
    rng = np.random.default_rng(5)
    curves = [(KNEE_X, 3 - 0.1 * KNEE_X + rng.normal(0, 0.1, 11)) for _ in range(6)]
    a = bootstrap_slope(curves, 1000, np.random.default_rng(7))
    assert a == bootstrap_slope(curves, 1000, np.random.default_rng(7))
    assert a != bootstrap_slope(curves, 1000, np.random.default_rng(8))
    assert a["ci_low"] < -0.1 < a["ci_high"] < 0 and a["n_curves"] == 6
    assert trend_verdict(a["ci_low"], a["ci_high"]).startswith("deep-to-shallow")
    flat = bootstrap_slope([(KNEE_X, rng.normal(0, 0.1, 11)) for _ in range(6)], 1000, np.random.default_rng(7))
    assert flat["ci_low"] < 0 < flat["ci_high"]
    assert trend_verdict(flat["ci_low"], flat["ci_high"]).startswith("no clear")


def test_depth_trend_table_per_cell_and_pooled():
    cfg = {**settings()["analysis"]["topology"], "budgets": ["0.1"]}
    topo, _ = fake_topology({0: 4.0, 1: 6.0})
    table = depth_trend_table(topo, cfg, seed=0)
    assert table["scope"].value_counts().to_dict() == {"seed": 4, "cell": 2, "pooled": 1}
    pooled = table[table["scope"] == "pooled"].iloc[0]
    assert pooled["slope"] == pytest.approx(-0.1, abs=0.01) and pooled["ci_high"] < 0 and pooled["n_curves"] == 4
    assert pd.isna(pooled["seed"]) and pooled["task"] == "all"
    pd.testing.assert_frame_equal(table, depth_trend_table(topo, cfg, seed=0))


def test_cross_seed_actions_and_figures(tables, tmp_path):
    """phase-shift, depth-trend and the four figures through the CLI, on the tables of the end-to-end run."""
    root = tables["root"]
    topo, lay = str(root / "topology.parquet"), str(root / "layers.parquet")
    hits = tmp_path / "summary_hits.parquet"
    pd.DataFrame({"seed": 0, "checkpoint": ["epoch-000", "epoch-001", "epoch-002"], "epoch": [0.0, 1.0, 2.0],
                  "task": "city", "type": "new", "freq_group": "high", "budget": "3", "target_type": "new",
                  "target_freq_group": "high", "ablation": "zero", "hit_at_k": [0.1, 0.5, 0.6]}).to_parquet(hits)
    s = json.dumps(settings())
    out = {n: tmp_path / n for n in ("ps.parquet", "ps.json", "dt.parquet", "dt.json")}
    assert main(["topology", "phase-shift", "--settings", s, "--topology", topo, "--hits", str(hits),
                 "--out-table", str(out["ps.parquet"]), "--out-json", str(out["ps.json"])]) == 0
    ps = json.loads(out["ps.json"].read_text())
    assert ps["curves"]["edge_jaccard_final"]["with_phase_shift"] == 0  # 3 checkpoints < min_points
    runs = []
    for _ in range(2):  # twice: byte-identical (seeded bootstrap)
        assert main(["topology", "depth-trend", "--settings", s, "--topology", topo,
                     "--out-table", str(out["dt.parquet"]), "--out-json", str(out["dt.json"])]) == 0
        runs.append(out["dt.json"].read_bytes())
    first = runs[0]
    assert runs[1] == first
    assert json.loads(first)["budgets"]["3"]["pooled"]["slope"] is not None
    entities = tmp_path / "entities.parquet"
    pd.DataFrame({"freq_group": ["high"], "frequency": [7]}).to_parquet(entities)
    for name, extra in (("topology_entropy", []), ("topology_jaccard", []), ("topology_layers", ["--layers", lay]),
                        ("topology_mean_layer", ["--trend", str(out["dt.json"])])):
        pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
        assert main(["figure", name, "--settings", s, "--topology", topo, "--entities",
                     str(entities), *extra, "--pdf", str(pdf), "--png", str(png)]) == 0
        assert pdf.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_rules_plan_the_topology_jobs(tmp_path):
    targets = ["results/tiny/analysis/phase_shift.json", "results/tiny/analysis/depth_trend.json",
               "results/tiny/figures/topology_layers.pdf", "results/tiny/figures/topology_mean_layer.png",
               "results/tiny/figures/topology_entropy.pdf", "results/tiny/figures/topology_jaccard.png"]
    text = snakemake(tmp_path, "-n", *targets).stdout
    for rule in ("topology_tables", "topology_phase_shift", "topology_depth_trend", "figure_topology_entropy",
                 "figure_topology_jaccard", "figure_topology_layers", "figure_topology_mean_layer"):
        assert f"rule {rule}:" in text
    assert "results/tiny/seed-0/analysis/topology.parquet" in text
