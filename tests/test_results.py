"""Results across seeds: the tidy table joins every stage's numbers on the right keys, and the
findings summary decides each finding from the numbers (hand-made tables with known answers)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import checkpoint_meta
from kcircuits.analysis.aggregate import tidy_table
from kcircuits.analysis.findings import relevance_finding
from kcircuits.analysis.report_stage import depth_finding, findings_markdown, phase_shift_finding

CELLS = [(task, etype, group) for task in ("city", "major") for etype in ("new", "revised")
         for group in ("low", "high")]
CKPTS = [("epoch-000", 0.0), ("epoch-001", 1.0), ("epoch-002", 2.0)]


def meta(seed, order):
    name, epoch = CKPTS[order]
    return checkpoint_meta(seed, name, epoch, order * 10, tokens_per_step=10)


def value(seed, order, task, etype, group, salt=0.0):
    """A distinct, recoverable number per key."""
    return seed * 1000 + order * 100 + CELLS.index((task, etype, group)) + salt


def stage_tables(seed):
    ev, stats, hits, topo, roles, lens, trans = [], [], [], [], [], [], []
    for order in range(len(CKPTS)):
        m = meta(seed, order)
        for task, etype, group in CELLS:
            v = value(seed, order, task, etype, group)
            cell = {"task": task, "type": etype, "freq_group": group}
            for attribute in (task, "birthday"):
                for target, metric in (("current", "query_top1"), ("original", "query_top1"),
                                       ("current", "mc_accuracy")):
                    ev.append({**m, "order": order, "metric": metric, "target": target, "type": etype,
                               "freq_group": group, "attribute": attribute,
                               "value": v + (0.5 if target == "original" else 0)
                               + (0.25 if metric == "mc_accuracy" else 0), "n": 10, "chance": np.nan})
            for budget in ("0.1", "0.25"):
                b = 0.01 if budget == "0.25" else 0.0
                stats.append({**m, **cell, "budget": budget, "n_edges": 5, "n_nodes": 4, "edge_entropy": 1.0,
                              "faithfulness": v + b})
                for t_type in ("new", "revised"):
                    for ablation in ("zero", "mean"):
                        own = t_type == etype
                        hits.append({**m, **cell, "budget": budget, "target_type": t_type, "target_freq_group": group,
                                     "ablation": ablation,
                                     "hit_at_k": (v + b if own else -1.0) + (0.5 if ablation == "mean" else 0),
                                     "full_model_hit_at_k": v + 0.75})
                topo.append({**m, "order": order, **cell, "budget": budget, "n_edges": 5, "n_nodes": 4,
                             "edge_entropy": 1.0, "node_jaccard_final": v, "edge_jaccard_final": v,
                             "node_jaccard_prev": v, "edge_jaccard_prev": v, "mean_layer": v + b})
                for role, share in (("mover", 0.5), ("relation", 0.25), ("mixture", 0.0)):
                    roles.append({**m, **cell, "budget": budget, "role": role, "count": 1, "n_nodes": 4,
                                  "proportion": share})
                trans.append({**m, **cell, "source_checkpoint": "epoch-002", "budget": budget, "n_edges": 5,
                              "ablation": "zero", "hit_at_k": v + b + 0.125, "mean_rank": 1.0})
            for layer in (-1, 0, 1):
                lens.append({**m, **cell, "layer": layer, "rank": v + layer, "median_rank": 1.0, "prob": 0.1,
                             "rank_at_subject": v - layer, "n_prompts": 10})
    return [pd.DataFrame(t) for t in (ev, stats, hits, trans, topo, roles, lens)]


def test_tidy_table_has_one_row_per_key_and_every_number_in_its_place():
    per_seed = [stage_tables(seed) for seed in (0, 1)]
    ev, stats, hits, trans, topo, roles, lens = ([t[i] for t in per_seed] for i in range(7))
    table = tidy_table(ev, stats, hits, trans, topo, roles, lens, tasks=["city", "major"], hit_k=10)
    keys = ["seed", "checkpoint", "task", "type", "freq_group", "budget"]
    assert len(table) == 2 * len(CKPTS) * len(CELLS) * 2 and not table.duplicated(keys).any()
    assert set(table["task"]) == {"city", "major"}  # only circuit tasks: "birthday" has no circuit
    for _, row in table.sample(20, random_state=0).iterrows():
        v = value(row["seed"], row["order"], row["task"], row["type"], row["freq_group"])
        b = 0.01 if row["budget"] == "0.25" else 0.0
        assert row["eval_query_top1"] == v and row["eval_original_query_top1"] == v + 0.5
        assert row["eval_mc_accuracy"] == v + 0.25
        assert row["circuit_faithfulness"] == v + b
        assert row["circuit_hit@10_zero"] == v + b and row["circuit_hit@10_mean"] == v + b + 0.5  # own cell only
        assert row["full_model_hit@10"] == v + 0.75
        assert row["transplant_hit@10_zero_from_epoch-002"] == v + b + 0.125
        assert row["topology_mean_layer"] == v + b
        assert (row["heads_mover_share"], row["heads_relation_share"], row["heads_mixture_share"]) == (0.5, 0.25, 0.0)
        assert (row["lens_rank_emb"] == v - 1 and row["lens_rank_L1"] == v + 1
                and row["lens_rank_at_subject_L1"] == v - 1)
    assert list(zip(table["seed"], table["order"])) == sorted(zip(table["seed"], table["order"]))


def neuron_tables(seed):
    """Per-seed neuron_evolution, neuron_overlap and neuron_interventions with recoverable numbers
    (value() + an offset per metric); "birthday" is not a circuit task and must not reach the table."""
    ev, ov, iv = [], [], []
    metrics = {"neurons_per_fact": 0.1, "mean_layer": 0.2, "jaccard_prev": 0.3, "jaccard_final": 0.4,
               "share_of_first": 0.5, "share_in_value": 0.6}
    for order in range(len(CKPTS)):
        m = meta(seed, order)
        for task, etype, group in CELLS:
            v = value(seed, order, task, etype, group)
            for attribute in (task, "birthday"):
                for method, mo in (("ig", 0.0), ("baseline", 0.05)):
                    head = {**m, "order": order, "type": etype, "freq_group": group, "attribute": attribute,
                            "method": method}
                    for kind, ko in (("value", 0.0), ("original", 0.01)):
                        ev.append({**head, "target_kind": kind, "n_facts": 2,
                                   **{k: v + o + mo + ko for k, o in metrics.items()}})
                    for budget in ("0.1", "0.25"):
                        b = 0.01 if budget == "0.25" else 0.0
                        ov.append({**head, "budget": budget, "n_neurons": 4, "n_in_circuit": 1,
                                   "share": v + b + mo + 0.7})
                    for fact, spread in ((0, -1.0), (1, 1.0)):  # the mean over the two facts is recoverable
                        for (neurons, prompts), co in ((("knowledge", "own"), 0.0), (("random", "own"), 0.02),
                                                       (("knowledge", "unrelated"), 0.03)):
                            for op, oo in (("suppress", 0.0), ("amplify", 0.004)):
                                iv.append({**head, "fact": fact, "neurons": neurons, "operation": op,
                                           "prompts": prompts, "n_neurons": 3, "change": v + spread + mo + co + oo})
    return [pd.DataFrame(t) for t in (ev, ov, iv)]


def test_tidy_table_places_every_knowledge_neuron_number():
    per_seed = [stage_tables(seed) for seed in (0, 1)]
    ev, stats, hits, trans, topo, roles, lens = ([t[i] for t in per_seed] for i in range(7))
    neurons = [neuron_tables(seed) for seed in (0, 1)]
    table = tidy_table(ev, stats, hits, trans, topo, roles, lens, tasks=["city", "major"], hit_k=10,
                       neuron_evolution=[n[0] for n in neurons], neuron_overlap=[n[1] for n in neurons],
                       neuron_interventions=[n[2] for n in neurons])
    plain = tidy_table(ev, stats, hits, trans, topo, roles, lens, tasks=["city", "major"], hit_k=10)
    assert len(table) == len(plain) and not any(c.startswith("neurons_") for c in plain.columns)
    pd.testing.assert_frame_equal(table[plain.columns], plain)  # the other columns do not move
    assert {"neurons_suppress_own_ig", "neurons_amplify_unrelated_baseline", "neurons_circuit_share_ig",
            "neurons_original_share_in_value_baseline"} <= set(table.columns)
    for _, row in table.sample(20, random_state=1).iterrows():
        v = value(row["seed"], row["order"], row["task"], row["type"], row["freq_group"])
        b = 0.01 if row["budget"] == "0.25" else 0.0
        assert row["neurons_per_fact_ig"] == pytest.approx(v + 0.1)
        assert row["neurons_per_fact_baseline"] == pytest.approx(v + 0.15)
        assert row["neurons_mean_layer_ig"] == pytest.approx(v + 0.2)
        assert row["neurons_jaccard_prev_ig"] == pytest.approx(v + 0.3)
        assert row["neurons_jaccard_final_ig"] == pytest.approx(v + 0.4)
        assert row["neurons_share_of_first_ig"] == pytest.approx(v + 0.5)
        assert row["neurons_original_share_of_first_ig"] == pytest.approx(v + 0.51)
        assert row["neurons_original_share_in_value_ig"] == pytest.approx(v + 0.61)
        assert row["neurons_circuit_share_ig"] == pytest.approx(v + b + 0.7)
        assert row["neurons_circuit_share_baseline"] == pytest.approx(v + b + 0.75)
        assert row["neurons_suppress_own_ig"] == pytest.approx(v)
        assert row["neurons_suppress_random_ig"] == pytest.approx(v + 0.02)
        assert row["neurons_suppress_unrelated_ig"] == pytest.approx(v + 0.03)
        assert row["neurons_amplify_own_baseline"] == pytest.approx(v + 0.054)


def test_results_commands_take_the_neuron_tables(tmp_path):
    from kcircuits.cli import main

    def write(name, frames):
        paths = [str(tmp_path / f"{name}-{i}.parquet") for i in range(len(frames))]
        for frame, path in zip(frames, paths):
            frame.to_parquet(path)
        return paths

    per_seed = [stage_tables(seed) + neuron_tables(seed) for seed in (0, 1)]
    names = ["eval", "stats", "hits", "transplants", "topology", "roles", "lens", "neuron-evolution",
             "neuron-overlap", "neuron-interventions"]
    paths = {name: write(name, [t[i] for t in per_seed]) for i, name in enumerate(names)}
    settings = json.dumps({"seed": 0, "circuit_pairs": {"tasks": ["city", "major"]}, "circuits": {"hit_k": 10},
                           "analysis": {"topology": {"n_bootstrap": 50}}})
    argv = ["results", "table", "--settings", settings, "--out", str(tmp_path / "table.parquet")]
    assert main(argv + [x for name, p in paths.items() for x in (f"--{name}", *p)]) == 0
    assert "neurons_suppress_own_ig" in pd.read_parquet(tmp_path / "table.parquet").columns
    phase = {"budget": "0.1", "curves": {}}
    depth = {"headline_budget": "0.1", "units": "layers per epoch", "budgets": {"0.1": {"pooled": {
        "slope": -0.2, "ci_low": -0.3, "ci_high": -0.1, "n_curves": 6, "verdict": "deep-to-shallow"}}}}
    for name, obj in (("phase", phase), ("depth", depth)):
        (tmp_path / f"{name}.json").write_text(json.dumps(obj))
    out = ["--out-json", str(tmp_path / "f.json"), "--out-md", str(tmp_path / "f.md")]
    argv = ["results", "findings", "--settings", settings, "--entity-evals", *write("entities", entity_tables(0.2)),
            "--phase-shift", str(tmp_path / "phase.json"), "--depth-trend", str(tmp_path / "depth.json"), *out]
    assert main(argv + ["--neuron-interventions", *paths["neuron-interventions"]]) == 0
    found = json.loads((tmp_path / "f.json").read_text())["knowledge_neurons"]
    assert found["seeds"] == [0, 1] and found["checkpoints"] == {"0": "epoch-002", "1": "epoch-002"}
    assert "## Knowledge neurons" in (tmp_path / "f.md").read_text()
    assert main(argv) == 0 and json.loads((tmp_path / "f.json").read_text())["knowledge_neurons"] is None


def entity_tables(effect: float, seeds=(0,), n=40, rng_seed=0):
    """Per-entity query top-1 where revised entities are ahead by `effect` at every checkpoint."""
    rng = np.random.default_rng(rng_seed)
    tables = []
    for seed in seeds:
        rows = []
        for entity in range(n):
            etype = "revised" if entity % 2 else "new"
            group = "high" if entity % 4 < 2 else "low"
            base = rng.uniform(0.2, 0.6)
            for order, (name, epoch) in enumerate(CKPTS):
                for attribute in ("city", "major"):
                    p = min(1.0, base + 0.1 * epoch + (effect if etype == "revised" else 0.0))
                    rows.append({"seed": seed, "checkpoint": name, "epoch": epoch, "target": "current",
                                 "entity_id": entity, "type": etype, "freq_group": group, "attribute": attribute,
                                 "query_top1": p})
        tables.append(pd.DataFrame(rows))
    return tables


def test_relevance_finding_detects_a_known_gap_and_not_a_null_one():
    ahead = relevance_finding(entity_tables(0.2), n_bootstrap=300)
    assert ahead["holds"] and ahead["difference"] == pytest.approx(0.2, abs=0.1)
    assert ahead["interval_95"][0] > 0
    behind = relevance_finding(entity_tables(-0.2), n_bootstrap=300)
    assert not behind["holds"] and behind["verdict"].startswith("reversed")
    same = [t.assign(query_top1=0.5) for t in entity_tables(0.0)]  # identical curves: difference exactly 0
    null = relevance_finding(same, n_bootstrap=300)
    assert not null["holds"] and null["difference"] == 0 and null["verdict"].startswith("not supported")
    again = relevance_finding(entity_tables(0.2), n_bootstrap=300)
    assert again == ahead  # seeded bootstrap: deterministic
    two = relevance_finding(entity_tables(0.2, seeds=(0, 1)), n_bootstrap=300)
    assert two["seeds"] == [0, 1]


def test_findings_restate_phase_shift_and_depth_verdicts_from_their_numbers():
    spread = {"median": 3.0, "min": 2.0, "max": 4.0}
    phase = {"budget": 0.1, "curves": {
        "edge_jaccard_final": {"fits": 4, "with_phase_shift": 3, "verdict": "phase shift in 3 of 4 fits",
                               "breakpoint_epoch_across_seeds": spread},
        "hit_at_10": {"fits": 4, "with_phase_shift": 1, "verdict": "no consistent phase shift",
                      "breakpoint_epoch_across_seeds": spread}}}
    assert not phase_shift_finding(phase)["holds"]
    phase["curves"]["hit_at_10"]["with_phase_shift"] = 2
    assert phase_shift_finding(phase)["holds"]
    depth = {"headline_budget": 0.1, "units": "layers per epoch", "budgets": {0.1: {"pooled": {
        "slope": -0.2, "ci_low": -0.3, "ci_high": -0.1, "n_curves": 6, "verdict": "deep-to-shallow"}}}}
    assert depth_finding(depth)["holds"]
    depth["budgets"][0.1]["pooled"].update(ci_high=0.05, verdict="no clear trend")
    assert not depth_finding(depth)["holds"]
    summary = {"relevance": relevance_finding(entity_tables(0.2), n_bootstrap=100),
               "phase_shift": phase_shift_finding(phase), "deep_to_shallow": depth_finding(depth),
               "provenance": {"settings": {"run": "x"}}}
    md = findings_markdown(summary)
    assert "| 1 |" in md and "| 3 |" in md and "no clear trend" in md
    json.dumps(summary)  # serialisable as written
