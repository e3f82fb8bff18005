"""Knowledge neurons across checkpoints (kcircuits.neurons.evolution) and the knowledge-neuron finding
(kcircuits.analysis.findings.neuron_finding), on hand-made tables with known answers."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from helpers import checkpoint_meta
from kcircuits.analysis.findings import neuron_finding
from kcircuits.analysis.report_stage import findings_markdown
from kcircuits.neurons.evolution import evolution, layer_distribution

CKPTS = [("epoch-000", 0.0), ("epoch-001", 1.0), ("epoch-002", 2.0)]
D_MLP = 4  # layer = index // D_MLP
FACTS = {0: ("new", "low", "city"), 1: ("new", "low", "city"), 2: ("revised", "low", "city")}
# (fact, method, target_kind) -> knowledge neurons at orders 0, 1, 2
SETS = {
    (0, "ig", "value"): [{1, 2, 3, 4}, {3, 4, 5}, {4, 5, 6, 7}],
    (1, "ig", "value"): [set(), {10}, {10}],
    (2, "ig", "value"): [set(), {2}, {1, 8}],
    (2, "ig", "original"): [{1, 2, 3}, {1, 2}, set()],
    (0, "baseline", "value"): [{0}, {0}, {0}],
    (1, "baseline", "value"): [{0}, {0}, {0}],
}


def tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(neurons, facts) of one seed as the summary step joins them (with `order`), rows shuffled."""
    facts, neurons = [], []
    for order, (name, epoch) in enumerate(CKPTS):
        meta = checkpoint_meta(seed, name, epoch, order * 10)
        for (fact, method, kind), per_ckpt in SETS.items():
            etype, group, attribute = FACTS[fact]
            cols = {**meta, "order": order, "fact": fact, "entity_id": fact, "name": f"e{fact}", "type": etype,
                    "freq_group": group, "frequency": 5, "attribute": attribute, "target_kind": kind, "method": method}
            facts.append({**cols, "n_prompts": 6, "prob": 0.5, "p": 0.7, "n_neurons": len(per_ckpt[order])})
            neurons += [{**cols, "index": i, "layer": i // D_MLP, "neuron": i % D_MLP, "score": 1.0, "n_coarse": 5,
                         "relation": False} for i in sorted(per_ckpt[order])]
    shuffle = np.random.default_rng(seed).permutation
    neurons, facts = pd.DataFrame(neurons), pd.DataFrame(facts)
    return neurons.iloc[shuffle(len(neurons))], facts.iloc[shuffle(len(facts))]


def cell(table, etype, method, kind, order):
    rows = table[(table["type"] == etype) & (table["method"] == method) & (table["target_kind"] == kind)
                 & (table["order"] == order)]
    assert len(rows) == 1
    return rows.iloc[0]


def near(x, expected):
    return math.isnan(x) if expected is None else x == pytest.approx(expected)


def test_evolution_counts_layers_and_jaccards_of_known_sets():
    ev = evolution(*tables())
    assert len(ev) == 3 * 4  # cells: new/ig/value, revised/ig/value, revised/ig/original, new/baseline/value
    assert list(ev["order"]) == sorted(ev["order"]) and ev["checkpoint"].iloc[0] == "epoch-000"
    expected = {  # order: n_facts, neurons_per_fact, mean_layer, jaccard_prev, jaccard_final, share_of_first
        0: (2, 2.0, 0.25, None, 1 / 14, 1.0),  # fact 1 has no neurons: counts 0; fact 0: 1/7, fact 1: 0/1
        1: (2, 2.0, 1.0, 0.2, 0.7, 0.5),      # fact 0: 2/5 to prev and final, fact 1: 0 and 1
        2: (2, 2.5, 1.2, 0.7, 1.0, 0.25),     # share_of_first: fact 0 only (fact 1 started empty)
    }
    for order, values in expected.items():
        row = cell(ev, "new", "ig", "value", order)
        names = ["n_facts", "neurons_per_fact", "mean_layer", "jaccard_prev", "jaccard_final", "share_of_first"]
        for name, want in zip(names, values):
            assert near(row[name], want), (order, name, row[name], want)
        assert math.isnan(row["share_in_value"])  # value rows
        base = cell(ev, "new", "baseline", "value", order)  # methods are separate cells
        assert base["neurons_per_fact"] == 1 and base["jaccard_final"] == 1 and base["mean_layer"] == 0


def test_evolution_follows_the_survival_of_original_value_neurons():
    ev = evolution(*tables())
    expected = {  # order: neurons_per_fact, mean_layer, jaccard_prev, jaccard_final, share_of_first, share_in_value
        0: (3.0, 0.0, None, 0.0, 1.0, 0.0),      # value has no neurons yet
        1: (2.0, 0.0, 2 / 3, 0.0, 2 / 3, 0.5),   # {1, 2}: 2 of the first 3 survive; 2 serves the value
        2: (0.0, None, 0.0, None, 0.0, None),    # all gone; final vs final both empty: 0/0
    }
    names = ["neurons_per_fact", "mean_layer", "jaccard_prev", "jaccard_final", "share_of_first", "share_in_value"]
    for order, values in expected.items():
        row = cell(ev, "revised", "ig", "original", order)
        for name, want in zip(names, values):
            assert near(row[name], want), (order, name, row[name], want)
    value = [cell(ev, "revised", "ig", "value", o) for o in range(3)]
    assert all(math.isnan(r["share_of_first"]) for r in value)  # the value had no neurons at the first checkpoint
    assert near(value[1]["jaccard_prev"], 0.0) and near(value[0]["jaccard_prev"], None)


def test_evolution_uses_each_seeds_own_order_and_is_deterministic():
    n0, f0 = tables(0)
    n1, f1 = tables(1)
    both = evolution(pd.concat([n0, n1]), pd.concat([f0, f1]))
    assert len(both) == 2 * 12 and set(both["seed"]) == {0, 1}
    one = evolution(n0, f0)
    pd.testing.assert_frame_equal(both[both["seed"] == 0].reset_index(drop=True), one)
    pd.testing.assert_frame_equal(evolution(*tables(0)), one)


def test_layer_distribution_shares_sum_to_one_with_zero_layers_kept():
    neurons, _ = tables()
    layers = layer_distribution(neurons, n_layers=4)
    keys = ["seed", "order", "type", "freq_group", "attribute", "method", "target_kind"]
    sums = layers.groupby(keys)["share"].sum()
    assert np.allclose(sums, 1.0)
    assert (layers.groupby(keys).size() == 4).all()  # every layer, zeros included
    first = layers[(layers["order"] == 0) & (layers["type"] == "new") & (layers["method"] == "ig")]
    assert list(first["layer"]) == [0, 1, 2, 3] and list(first["count"]) == [3, 1, 0, 0]
    assert list(first["share"]) == [0.75, 0.25, 0.0, 0.0]
    # cells without neurons (revised original at the last checkpoint) have no rows
    assert layers[(layers["target_kind"] == "original") & (layers["order"] == 2)].empty
    assert layer_distribution(neurons)["layer"].max() == 2  # default: highest layer seen
    with pytest.raises(ValueError):
        layer_distribution(neurons, n_layers=2)


# ---- the finding ---------------------------------------------------------------------------------------
def interventions(own: float, random: float, unrelated: float, amplify: float, seeds=(0,), n=40,
                  noise: float = 0.05, rng_seed: int = 0) -> list[pd.DataFrame]:
    """Per seed: interventions.parquet of two checkpoints joined with `order`; at the last one the
    relative changes are centred on the given means; the earlier one has the opposite pattern (must be
    ignored). noise=0: own, random and unrelated of a fact are the same number plus their means."""
    rng = np.random.default_rng(rng_seed)
    out = []
    for seed in seeds:
        rows = []
        for order, (name, epoch) in enumerate(CKPTS[:2]):
            sign = 1 if order == 1 else -1
            meta = checkpoint_meta(seed, name, epoch, order * 10)
            for fact in range(n):
                group = "high" if fact % 2 else "low"
                n_neurons = 0 if fact < 2 else 3  # facts 0 and 1: no knowledge neurons
                shared = rng.normal(0, 0.02)
                for method in ("ig", "baseline"):
                    for op, means in (("suppress", {"own": own, "random": random, "unrelated": unrelated}),
                                      ("amplify", {"own": amplify, "random": 0.0, "unrelated": 0.0})):
                        for (neurons, prompts), cond in (("knowledge", "own"), "own"), (("random", "own"), "random"), \
                                (("knowledge", "unrelated"), "unrelated"):
                            change = 0.0 if n_neurons == 0 else sign * means[cond] + shared + rng.normal(0, noise)
                            rows.append({**meta, "order": order, "fact": fact, "entity_id": fact, "name": f"e{fact}",
                                         "type": "new", "freq_group": group, "frequency": 5, "attribute": "city",
                                         "method": method, "neurons": neurons, "operation": op, "prompts": prompts,
                                         "n_neurons": n_neurons, "n_prompts": 6, "p_before": 0.5,
                                         "p_after": 0.5 * (1 + change), "change": change})
        out.append(pd.DataFrame(rows))
    return out


def test_neuron_finding_detects_a_known_effect():
    kn = neuron_finding(interventions(own=-0.6, random=-0.05, unrelated=-0.05, amplify=0.5), n_bootstrap=300)
    assert kn["holds"] and kn["verdict"].startswith("holds")
    sup = kn["suppress"]
    assert sup["n_facts"] == 38 and kn["facts_without_neurons"] == 2  # the two facts without neurons left out
    assert sup["own"]["mean"] == pytest.approx(-0.6, abs=0.05)
    assert sup["own_minus_random"]["mean"] == pytest.approx(-0.55, abs=0.05)
    assert sup["own_minus_random"]["interval_95"][1] < 0 and sup["own_minus_unrelated"]["interval_95"][1] < 0
    lo, hi = sup["own"]["interval_95"]
    assert lo < sup["own"]["mean"] < hi
    assert kn["amplify"]["holds"] and kn["amplify"]["own"]["interval_95"][0] > 0
    assert kn["baseline"]["suppress"]["holds"] and kn["baseline"]["amplify"]["holds"]
    assert set(kn["per_group"]) == {"high", "low"} and all(g["suppress"]["holds"] for g in kn["per_group"].values())
    assert kn["per_group"]["low"]["suppress"]["n_facts"] == 19
    assert kn["checkpoints"] == {"0": "epoch-001"} and kn["seeds"] == [0]  # the last checkpoint only
    again = neuron_finding(interventions(own=-0.6, random=-0.05, unrelated=-0.05, amplify=0.5), n_bootstrap=300)
    assert again == kn  # seeded bootstrap: deterministic
    json.dumps(kn)


def test_neuron_finding_reports_a_reversed_and_a_null_effect_as_such():
    rev = neuron_finding(interventions(own=-0.05, random=-0.6, unrelated=-0.6, amplify=-0.3), n_bootstrap=300)
    assert not rev["holds"] and rev["verdict"].startswith("reversed")
    assert rev["suppress"]["own_minus_random"]["interval_95"][0] > 0
    assert not rev["amplify"]["holds"] and rev["amplify"]["verdict"] == "not supported: own change below 0"
    null = neuron_finding(interventions(own=-0.3, random=-0.3, unrelated=-0.3, amplify=0.0, noise=0.0),
                          n_bootstrap=300)  # per fact own = random = unrelated: contrasts exactly 0
    assert not null["holds"] and null["verdict"].startswith("not supported")
    contrast = null["suppress"]["own_minus_random"]
    assert contrast["mean"] == 0 and contrast["interval_95"] == [0, 0]
    mixed = neuron_finding(interventions(own=-0.6, random=-0.05, unrelated=-0.7, amplify=0.5), n_bootstrap=300)
    assert not mixed["holds"]  # worse than random neurons, but not specific to the fact
    assert mixed["verdict"] == "not supported: own minus random below 0, own minus unrelated above 0"


def test_neuron_finding_pools_seeds_and_reaches_the_markdown():
    two = neuron_finding(interventions(own=-0.6, random=-0.05, unrelated=-0.05, amplify=0.5, seeds=(0, 1)),
                         n_bootstrap=200)
    assert two["seeds"] == [0, 1] and two["suppress"]["n_facts"] == 76 and two["holds"]
    assert two["checkpoints"] == {"0": "epoch-001", "1": "epoch-001"}
    summary = {"relevance": {"finding": "f1", "holds": True, "metric": "query_top1", "difference": 0.1,
                             "interval_95": [0.05, 0.15], "verdict": "holds", "per_group": {}, "entities": {},
                             "seeds": [0, 1]},
               "phase_shift": {"finding": "f2", "holds": False, "curves": {}},
               "deep_to_shallow": {"finding": "f3", "holds": False, "verdict": "no clear trend", "budget": 0.1,
                                   "units": "layers per epoch", "slope": 0.0, "interval_95": [-0.1, 0.1],
                                   "n_curves": 2},
               "knowledge_neurons": two}
    md = findings_markdown(summary)
    assert "## Knowledge neurons" in md and "| KN |" in md and "| IG | suppress ×0 | 76 |" in md
    assert f"{two['suppress']['own_minus_random']['mean']:+.3f}" in md and "| low | 38 |" in md
    assert "Not tested" in findings_markdown(summary | {"knowledge_neurons": None})
    empty = neuron_finding([], n_bootstrap=10)
    assert not empty["holds"] and empty["suppress"]["own"]["mean"] is None
