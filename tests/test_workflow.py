"""The whole workflow end to end on the smoke world with two training seeds (real training, real
attribution, every table, figure and the findings), then the Snakemake report, and what a dry run
plans when one checkpoint is added to the schedule."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import SMOKE, planned_jobs, snakemake

pytestmark = pytest.mark.slow  # every test reads one complete run of the workflow
SHORT = """
train:
  seeds: [0, 1]
  base: {epochs: 1, lr: 3.0e-3}
  continual: {epochs: 2, lr: 3.0e-3}
circuits:
  max_pairs: 8
order:
  types: [city, major]
  entities: 12
  repeats: 16
  checkpoints: {gaps: [1, 2], every: 0}
  max_pairs: 4
forgetting:
  corpora: [conflicting, other_entities]
  replay: [0.0, 1.0]
  steps: 4
  entities: 20
  paragraphs: 2
  entities_per_cell: 4
  checkpoints: {gaps: [1, 2], every: 0}
  max_pairs: 4
reckoning:
  entities: {train: 8, validation: 4, test: 12}
  distractors: [0, 2]
  inner: {steps: 2}
  outer: {epochs: 1}
  evaluate: {extra_steps: 1, timing_questions: [1, 2]}
  circuits: {entities: 8}
"""
FIGURES = ["acquisition", "overwriting", "entity_heatmap", "generation_probe", "circuit_hits", "circuit_cross_group",
           "circuit_cross_group_training", "circuit_transplant", "circuit_faithfulness", "topology_entropy",
           "topology_jaccard", "topology_layers", "topology_mean_layer", "head_roles", "head_layers", "logit_lens",
           "neurons_layers", "neurons_suppress", "neurons_edit", "neurons_erase", "neurons_training",
           "neurons_circuit_overlap", "order_accuracy", "order_heatmap", "order_circuits", "forgetting_recall",
           "forgetting_circuits", "reckoning_accuracy", "reckoning_steps", "reckoning_recitation", "reckoning_timing",
           "reckoning_circuits", "memory_recall", "memory_layers", "memory_locality"]
PER_CHECKPOINT = {"evaluate", "circuit_scores", "circuit_eval", "circuit_transplant", "components_measure",
                  "neurons_measure"}


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("workflow")
    short = work / "short.yaml"
    short.write_text(SHORT)
    snakemake(work, configfiles=(SMOKE, short))  # the default target: rule all
    return work, short


def test_every_output_of_rule_all_exists_for_both_seeds(complete_run):
    work, _ = complete_run
    run = work / "results" / "smoke"
    figures = sorted(p.stem for p in (run / "figures").glob("*.png"))
    assert figures == sorted(FIGURES) and all((run / "figures" / f"{f}.pdf").stat().st_size > 1000 for f in figures)
    table = pd.read_parquet(run / "analysis" / "table.parquet")
    assert sorted(table["seed"].unique()) == [0, 1]
    assert sorted(table["checkpoint"].unique()) == ["epoch-000", "epoch-001", "epoch-002"]
    keys = ["seed", "checkpoint", "task", "type", "freq_group", "budget"]
    assert not table.duplicated(keys).any()
    for column in ("eval_query_top1", "circuit_faithfulness", "circuit_hit@10_zero", "topology_edge_jaccard_final",
                   "heads_mover_share", "lens_rank_L1", "neurons_per_fact_ig", "neurons_circuit_share_ig"):
        assert table[column].notna().any(), column
    # the two replicates were trained differently (seeded init and order), on the same data
    a, b = (pd.read_parquet(run / f"seed-{s}" / "eval" / "summary.parquet") for s in (0, 1))
    assert not a["value"].equals(b["value"])
    findings = json.loads((run / "analysis" / "findings.json").read_text())
    assert set(findings) >= {"relevance", "phase_shift", "deep_to_shallow", "knowledge_neurons", "order", "forgetting",
                             "reckoning", "memory"}
    assert findings["relevance"]["seeds"] == [0, 1]
    assert "| 1 |" in (run / "analysis" / "findings.md").read_text()


def test_order_runs_train_each_stream_in_its_order_and_are_compared_with_the_random_order(complete_run):
    work, _ = complete_run
    run = work / "results" / "smoke"
    sentences = pd.read_parquet(run / "data" / "order" / "sentences.parquet")
    streams = pd.read_parquet(run / "data" / "order" / "streams.parquet")
    for name, (a, b) in {"city-major": ("city", "major"), "major-city": ("major", "city")}.items():
        kinds = sentences.set_index("sentence").loc[streams[streams["stream"] == name]["sentence"], "knowledge"]
        positions = np.arange(len(kinds))
        assert positions[kinds.to_numpy() == a].max() < positions[kinds.to_numpy() == b].min()
    shapes = {np.load(p)["blocks"].shape for p in (run / "data" / "order" / "blocks").glob("*.npz")}
    assert len(shapes) == 1  # every stream as long as the others: every run takes the same steps
    for seed in (0, 1):
        for stream in ("random", "city-major", "major-city"):
            folder = run / f"seed-{seed}" / "order" / stream
            steps = sorted(p.name for p in (folder / "checkpoints").glob("step-*"))
            assert steps[:2] == ["step-000001", "step-000003"] and len(steps) == 3
            accuracy = pd.read_parquet(folder / "accuracy.parquet")
            assert sorted(accuracy["step"].unique())[0] == 0 and accuracy["seed"].unique().tolist() == [seed]
            assert set(accuracy["attribute"]) == {"city", "major"} and accuracy["entity_id"].nunique() == 12
    outcome = pd.read_parquet(run / "analysis" / "order" / "outcome.parquet")
    assert {(a, b) for a, b in zip(outcome["first"], outcome["second"])} == {("city", "major"), ("major", "city")}
    assert (outcome["n_seeds"] == 2).all() and outcome["difference"].notna().all()
    overlap = pd.read_parquet(run / "analysis" / "order" / "overlap.parquet")
    assert overlap["jaccard"].between(0, 1).all() and len(overlap)


def test_forgetting_runs_start_from_the_last_checkpoint_and_replay_keeps_recall(complete_run):
    work, _ = complete_run
    run = work / "results" / "smoke"
    recall = pd.read_parquet(run / "analysis" / "forgetting" / "recall.parquet")
    start = recall[(recall["step"] == 0) & (recall["type"] == "all") & (recall["freq_group"] == "all")]
    assert start.groupby("seed")["top1"].nunique().eq(1).all()  # every run starts from the same model
    assert len(start) == 2 * 2 * 2  # seeds x corpora x replay shares
    mix = np.load(run / "seed-0" / "forgetting" / "conflicting-replay-0" / "blocks.npz")
    assert not mix["is_replay"].any() and np.load(run / "seed-0" / "forgetting" / "other_entities-replay-1"
                                                  / "blocks.npz")["is_replay"].all()
    last = json.loads((run / "seed-0" / "forgetting" / "conflicting-replay-0" / "checkpoints" / "step-000004"
                       / "checkpoint.json").read_text())
    assert (last["phase"], last["global_step"]) == ("forgetting", 4)
    circuits = pd.read_parquet(run / "analysis" / "forgetting" / "circuits.parquet")
    assert (circuits[circuits["step"] == 0]["jaccard"] == 1).all()  # the pre-forgetting circuit itself
    finding = json.loads((run / "analysis" / "findings.json").read_text())["forgetting"]
    assert set(finding["corpora"]) == {"conflicting", "other_entities"}


def test_reckoning_trains_every_method_from_the_last_checkpoint_and_tests_on_unseen_entities(complete_run):
    work, _ = complete_run
    run = work / "results" / "smoke"
    contexts = pd.read_parquet(run / "data" / "reckoning" / "contexts.parquet")
    test_names = set(contexts[contexts["split"] == "test"]["name"])
    train_text = " ".join(f for facts in contexts[contexts["split"] == "train"]["facts"] for f in facts)
    assert len(test_names) == 12 and not any(name in train_text for name in test_names)
    for seed in (0, 1):
        for method in ("reckoning", "reckoning_mt", "ft_icr", "no_facts", "random_facts"):
            folder = run / f"seed-{seed}" / "reckoning" / method
            record = json.loads((folder / "model" / "train.json").read_text())
            assert record["start"].endswith("epoch-002") and record["seed"] == seed
            answers = pd.read_parquet(folder / "answers.parquet")
            encoded = method.startswith("reckoning")
            assert sorted(answers["steps"].unique()) == ([0, 1, 2, 3] if encoded else [0])
            assert set(answers["entity_id"]) == set(contexts[contexts["split"] == "test"]["entity_id"])
            assert set(answers["hops"]) == {1, 2} and answers["seed"].unique().tolist() == [seed]
    accuracy = pd.read_parquet(run / "analysis" / "reckoning" / "accuracy.parquet")
    assert (accuracy["n_seeds"] == 2).all()  # each replicate's answers kept apart
    compare = pd.read_parquet(run / "analysis" / "reckoning" / "circuit_compare.parquet")
    encoded = compare[compare["source"] == "encoded"]
    assert set(encoded["method"]) == {"reckoning", "reckoning_mt"} and (encoded["jaccard_with_encoded"] == 1).all()
    assert (compare["source"] == "continual").any()
    finding = json.loads((run / "analysis" / "findings.json").read_text())["reckoning"]
    assert finding["method"] == "reckoning_mt" and finding["verdict"]
    assert "## RECKONING" in (run / "analysis" / "findings.md").read_text()


def test_memory_runs_share_the_plain_model_at_alpha_zero_and_the_loss_puts_activity_in_the_slots(complete_run):
    work, _ = complete_run
    run = work / "results" / "smoke"
    for seed in (0, 1):
        base = run / f"seed-{seed}" / "memory" / "documents~8" / "model~main"
        assert sorted(p.name for p in base.iterdir()) == ["layer~1", "plain"]
        assert not list(base.glob("layer~1/alpha~0.0/*/model"))  # alpha 0: the plain run serves every point
        record = json.loads((base / "plain" / "model" / "checkpoint.json").read_text())
        assert record["seed"] == seed and record["run"]["alpha"] == 0
        point = {(alpha, allocation): base / "layer~1" / f"alpha~{alpha}" / f"allocation~{allocation}"
                 for alpha in ("0.0", "2.0") for allocation in ("partitioned", "simset-1")}
        facts = {key: pd.read_parquet(folder / "facts.parquet") for key, folder in point.items()}
        assert facts["0.0", "partitioned"]["top1"].equals(facts["0.0", "simset-1"]["top1"])  # the same model
        assert set(facts["2.0", "partitioned"]["seed"]) == {seed}
        for allocation in ("partitioned", "simset-1"):
            docs = {alpha: pd.read_parquet(point[alpha, allocation] / "documents.parquet") for alpha in ("0.0", "2.0")}
            assert docs["2.0"]["slot_share"].mean() > docs["0.0"]["slot_share"].mean() + 0.1
    recall = pd.read_parquet(run / "analysis" / "memory" / "recall.parquet")
    assert len(recall) == 4 and set(recall["alpha"]) == {0.0, 2.0}
    assert "memory" in json.loads((run / "analysis" / "findings.json").read_text())


def test_suppressing_knowledge_neurons_hurts_a_learnt_fact_more_than_random_neurons(complete_run):
    """(d) On the trained smoke model's last checkpoint, zeroing a high-frequency fact's IG knowledge
    neurons lowers P(value) on its own prompts more than zeroing as many random neurons of the same
    layers does (paired per fact), and its neurons were chosen on the same facts every checkpoint."""
    work, _ = complete_run
    run = work / "results" / "smoke" / "seed-0"
    table = pd.read_parquet(run / "neurons" / "epoch-002" / "interventions.parquet")
    own = table[(table["method"] == "ig") & (table["operation"] == "suppress") & (table["prompts"] == "own")
                & (table["freq_group"] == "high")]
    change = own.pivot_table(index="fact", columns="neurons", values="change")  # fact x (knowledge, random)
    assert len(change) >= 5
    assert (change["knowledge"] < change["random"]).mean() > 0.8
    assert change["knowledge"].mean() < change["random"].mean() - 0.05
    facts = [set(pd.read_parquet(run / "neurons" / c / "facts.parquet")["fact"]) for c in ("epoch-000", "epoch-002")]
    assert facts[0] == facts[1]


def test_report_contains_every_figure_with_a_caption(complete_run):
    work, short = complete_run
    proc = snakemake(work, "--report", "report.html", configfiles=(SMOKE, short), cores=None)  # as users type it
    assert "ERROR/" not in proc.stdout + proc.stderr  # every caption renders (reStructuredText)
    html = (work / "report.html").read_text(errors="replace")
    for png in (work / "results" / "smoke" / "figures").glob("*.png"):
        assert png.name in html, png.name
    assert "findings.md" in html


def test_adding_one_checkpoint_plans_only_its_jobs_and_the_joins(complete_run):
    work, short = complete_run
    denser = work / "denser.yaml"
    denser.write_text(SHORT.replace("  continual: {epochs: 2, lr: 3.0e-3}\n", "  continual: {epochs: 2, lr: 3.0e-3}\n"
                                    "  checkpoints: {every_epochs: 1, steps: [3]}\n"))  # step 3: within epoch 1
    jobs = planned_jobs(snakemake(work, "-n", configfiles=(SMOKE, denser)))
    new = PER_CHECKPOINT | {"train_continual", "export_checkpoint"}  # the step's own state and export
    per_seed = {name: n for name, n in jobs.items() if name in new}
    assert per_seed == {name: 2 for name in new}  # one new checkpoint x 2 seeds: no epoch retrained or re-exported
    assert not {"train_base", "export_start_checkpoint", "continual_corpus"} & set(jobs)
    rest = set(jobs) - new
    joins = {"eval_summary", "circuit_summary", "components_summary", "neurons_summary", "topology_tables",
             "topology_phase_shift", "topology_depth_trend", "results_table", "findings", "all"}
    assert rest - joins == {name for name in rest if name.startswith("figure_")}


def test_a_gated_memory_trains_alone_once_per_layer_at_alpha_zero_and_follows_the_allocation(complete_run):
    """Last in this module: it reruns the memory study of the complete run with memory.module gated."""
    from safetensors.torch import load_file

    work, short = complete_run
    gated = work / "gated.yaml"
    gated.write_text("memory: {module: gated}\n")
    snakemake(work, "memory_summary", configfiles=(SMOKE, short, gated))
    run = work / "results" / "smoke"
    for seed in (0, 1):
        base = run / f"seed-{seed}" / "memory" / "documents~8" / "model~main"
        models = sorted(str(p.parent.relative_to(base)) for p in base.glob("**/model"))
        assert models == ["layer~1/alpha~0.0/allocation~partitioned", "layer~1/alpha~2.0/allocation~partitioned",
                          "layer~1/alpha~2.0/allocation~simset-1", "plain"]  # plain: left from the mlp run
        start = load_file(str(run / f"seed-{seed}" / "checkpoints" / "epoch-000" / "model.safetensors"))
        for name in models[:3]:
            folder = base / name / "model"
            assert json.loads((folder / "checkpoint.json").read_text())["module"] == "gated"
            weights = load_file(str(folder / "model.safetensors"))
            assert weights.keys() == start.keys() and all(weights[k].equal(start[k]) for k in start)  # frozen
            assert (folder / "memory.safetensors").is_file()
        point = {(alpha, allocation): base / "layer~1" / f"alpha~{alpha}" / f"allocation~{allocation}"
                 for alpha in ("0.0", "2.0") for allocation in ("partitioned", "simset-1")}
        facts = {key: pd.read_parquet(folder / "facts.parquet") for key, folder in point.items()}
        assert facts["0.0", "partitioned"]["top1"].equals(facts["0.0", "simset-1"]["top1"])  # the layer's one run
        for allocation in ("partitioned", "simset-1"):
            docs = {alpha: pd.read_parquet(point[alpha, allocation] / "documents.parquet") for alpha in ("0.0", "2.0")}
            assert docs["2.0"]["slot_share"].mean() > docs["0.0"]["slot_share"].mean() + 0.1
    assert len(pd.read_parquet(run / "analysis" / "memory" / "recall.parquet")) == 4
