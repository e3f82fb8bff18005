"""Knowledge-neuron experiments (kcircuits.neurons.experiments): suppress / amplify against hooks on the
Hugging Face model itself, value slots (the right row / column, restored bit for bit), edit and erase.
Tiny random models, hand-built bags; one thread (the machine is shared)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import V, down_proj, random_model
from kcircuits.circuits.model import CircuitModel
from kcircuits.neurons.experiments import (
    EDIT_COLUMNS,
    ERASE_COLUMNS,
    INTERVENTION_COLUMNS,
    d_mlp,
    edit_rule,
    edited_value_slots,
    edits,
    erase,
    frequent_neurons,
    interventions,
    matched_random,
    scaled_neurons_prob,
    target_scores,
    unedited_scores,
    value_slots,
)
from kcircuits.neurons.facts import FACT_COLUMNS, Bags

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = torch.randint(1, V, (4, 6), generator=torch.Generator().manual_seed(1))  # [P, T], right-padded
LAST = torch.tensor([5, 3, 5, 2])
TARGETS = torch.tensor([7, 19, 33, 50])
FAMILIES = [("gpt2", {}), ("gpt_neox", {}), ("llama", {"num_key_value_heads": 2})]


def snapshot(hf) -> dict[str, torch.Tensor]:
    return {k: t.detach().clone() for k, t in hf.state_dict().items()}


def assert_unchanged(hf, before: dict) -> None:
    after = hf.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def hf_scaled(hf, ids: torch.Tensor, units: dict[int, list[int]], factor: float,
              last_only: bool = True) -> torch.Tensor:
    """The HF model's logits [T, V] for one unpadded prompt ids [T] with, in each layer of `units`, those
    hidden units multiplied by factor at the last position (or every position): pre-hooks on the down
    projections."""
    def hook(cols):
        def scale(module, args):
            x = args[0].clone()
            where = (slice(None), slice(-1, None) if last_only else slice(None))
            x[where + (cols,)] = x[where + (cols,)] * factor
            return (x,)
        return scale

    handles = [down_proj(hf, layer).register_forward_pre_hook(hook(list(cols))) for layer, cols in units.items()]
    try:
        with torch.no_grad():
            return hf(ids[None]).logits[0]
    finally:
        for h in handles:
            h.remove()


def make_bags(model, facts: list[tuple[str, int]], seed: int = 0, original: int = 0, top1: bool = False) -> Bags:
    """Bags of random prompts: facts = (attribute, n prompts) with fact number = position; `original`
    extra original-target prompts per fact; top1: each target is the model's own top-1 token."""
    g = torch.Generator().manual_seed(seed)
    records, prompts = [], []
    for fact, (attr, n) in enumerate(facts):
        base = {"fact": fact, "entity_id": 100 + fact, "name": f"e{fact}", "type": "new", "freq_group": "high",
                "frequency": 3, "attribute": attr}
        for t in range(n + original):
            length = int(torch.randint(2, 7, (1,), generator=g))
            prompts.append(torch.randint(1, V, (length,), generator=g))
            records.append({**base, "target_kind": "value" if t < n else "original", "template": t,
                            "prompt": f"p{fact}.{t}", "answer": f"{attr}-{fact}"})
    ids = torch.zeros(len(prompts), 6, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = p
    last = torch.tensor([len(p) - 1 for p in prompts])
    targets = torch.randint(1, V, (len(prompts),), generator=g)
    if top1:
        with torch.no_grad():
            targets = model.run(ids, last).argmax(-1)
    return Bags(ids, last, targets, pd.DataFrame(records).assign(target=targets.numpy()))


# ---- value slots -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,extra", FAMILIES)
def test_a_value_slot_is_what_the_neuron_writes(family, extra):
    """Zeroing neuron i's value slot = zeroing its activation at every position (its row of GPT-2's
    Conv1D [m, d], its column of the nn.Linear [d, m] of GPT-NeoX and Llama)."""
    hf = random_model(family, std=0.3, **extra)
    model = CircuitModel(hf)
    m = d_mlp(model)
    assert m == (4 * 32 if family == "gpt2" else 2 * 32)
    ids = IDS[0]
    for layer, unit in [(0, 3), (1, m - 1)]:
        expected = hf_scaled(hf, ids, {layer: [unit]}, 0.0, last_only=False)
        with edited_value_slots(model, [layer * m + unit], torch.zeros(1, 32)):
            with torch.no_grad():
                got = hf(ids[None]).logits[0]
        assert not torch.allclose(expected, hf_scaled(hf, ids, {}, 1.0))  # the neuron matters
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family,extra", FAMILIES)
def test_edited_slots_are_restored_bit_for_bit_even_after_an_exception(family, extra):
    hf = random_model(family, **extra)
    model = CircuitModel(hf)
    before = snapshot(hf)
    m = d_mlp(model)
    index = np.array([5, m + 2, m + 7])
    values = torch.randn(3, 32)
    with edited_value_slots(model, index, values):
        torch.testing.assert_close(value_slots(model, index), values, atol=0, rtol=0)
        assert sum(not torch.equal(t, before[k]) for k, t in hf.state_dict().items()) == 2  # two layers' weights
    assert_unchanged(hf, before)
    with pytest.raises(RuntimeError, match="inside"):
        with edited_value_slots(model, index, edit_rule(value_slots(model, index), torch.randn(32), torch.randn(32),
                                                        1.0, 8.0)):
            assert any(not torch.equal(t, before[k]) for k, t in hf.state_dict().items())
            raise RuntimeError("inside")
    assert_unchanged(hf, before)
    with pytest.raises(ValueError):
        with edited_value_slots(model, [5, 5], torch.zeros(2, 32)):
            pass


def test_the_edit_rule_removes_and_adds_norm_scaled_directions():
    slots = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]])
    e_old, e_new = torch.tensor([10.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.5])
    out = edit_rule(slots, e_old, e_new, 1.0, 8.0)
    torch.testing.assert_close(out, torch.tensor([[3.0 - 5.0, 4.0, 40.0], [-2.0, 0.0, 2.0 + 16.0]]))


# ---- suppress / amplify --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,extra", [("gpt2", {}), ("llama", {"num_key_value_heads": 2})])
@pytest.mark.parametrize("factor", [0.0, 2.0])
def test_scaled_neurons_match_hooks_on_the_hf_model_at_two_layers(family, extra, factor):
    hf = random_model(family, std=0.3, **extra)
    model = CircuitModel(hf)
    m = d_mlp(model)
    units = [{0: [1, 4], 1: [0]}, {1: [2, 3, 9]}, {}, {0: [7], 1: [7, 8]}]  # per row: layer -> units
    per_row = [np.array([lay * m + u for lay, us in row.items() for u in us], dtype=np.int64) for row in units]
    got = scaled_neurons_prob(model, IDS, LAST, TARGETS, per_row, factor, batch_size=3)
    clean = scaled_neurons_prob(model, IDS, LAST, TARGETS, batch_size=3)
    for q in range(len(IDS)):
        ids = IDS[q, : LAST[q] + 1]
        want = torch.softmax(hf_scaled(hf, ids, units[q], factor)[-1], -1)[TARGETS[q]]
        assert got[q] == pytest.approx(float(want), rel=1e-4, abs=1e-7)
        plain = torch.softmax(hf_scaled(hf, ids, {}, 1.0)[-1], -1)[TARGETS[q]]
        assert clean[q] == pytest.approx(float(plain), rel=1e-4, abs=1e-7)
    assert got[2] == pytest.approx(clean[2])  # no neurons: unchanged
    assert not np.allclose(got, clean)
    np.testing.assert_allclose(scaled_neurons_prob(model, IDS, LAST, TARGETS, per_row, 1.0), clean, rtol=1e-6)
    np.testing.assert_allclose(scaled_neurons_prob(model, IDS, LAST, TARGETS, per_row, factor, batch_size=64), got,
                               rtol=1e-5, atol=1e-8)


def test_the_random_control_draws_the_same_per_layer_counts():
    m = 16
    index = np.array([3, 5, 16 + 1, 48 + 0, 48 + 2, 48 + 15])  # layers 0, 0, 1, 3, 3, 3
    for seed in range(5):
        drawn = matched_random(index, m, np.random.default_rng(seed))
        assert np.bincount(drawn // m, minlength=4).tolist() == np.bincount(index // m, minlength=4).tolist()
        assert len(np.unique(drawn)) == len(drawn) and not np.isin(drawn, index).any()
    again = matched_random(index, m, np.random.default_rng(0))
    assert again.tolist() == matched_random(index, m, np.random.default_rng(0)).tolist()
    crowded = matched_random(np.array([0, 1, 2]), 4, np.random.default_rng(0))  # too few others: whole layer
    assert len(np.unique(crowded)) == 3 and (crowded < 4).all()
    assert matched_random(np.array([], dtype=np.int64), m, np.random.default_rng(0)).tolist() == []


def test_interventions_table():
    hf = random_model("gpt2", std=0.3)
    model = CircuitModel(hf)
    m = d_mlp(model)
    bags = make_bags(model, [("city", 3), ("city", 4), ("major", 3), ("company", 2)], original=2)
    neurons = {0: np.array([2, m + 5]), 1: np.array([m + 1, m + 2, m + 3]), 2: np.array([], dtype=np.int64)}
    table = interventions(model, bags, neurons, np.random.default_rng(0), batch_size=5)
    assert list(table.columns) == FACT_COLUMNS + INTERVENTION_COLUMNS == FACT_COLUMNS + [
        "neurons", "operation", "prompts", "n_neurons", "n_prompts", "p_before", "p_after", "change"]
    assert sorted(table["fact"].unique()) == [0, 1] and len(table) == 2 * 2 * 2 * 2
    counts = table.groupby(["fact", "neurons"])["n_neurons"].unique()
    assert counts[(0, "knowledge")].tolist() == counts[(0, "random")].tolist() == [2]
    value = bags.select(bags.rows["target_kind"] == "value")
    clean = scaled_neurons_prob(model, value.ids, value.last, value.targets)
    own = value.rows["fact"].to_numpy() == 1
    row = table.query("fact == 1 and neurons == 'knowledge' and operation == 'suppress' and prompts == 'own'").iloc[0]
    assert row["n_prompts"] == 4 and row["p_before"] == pytest.approx(clean[own].mean())
    sub = value.select(own)
    direct = scaled_neurons_prob(model, sub.ids, sub.last, sub.targets, [neurons[1]] * 4, 0.0)
    assert row["p_after"] == pytest.approx(direct.mean(), rel=1e-5)
    assert row["change"] == pytest.approx((row["p_after"] - row["p_before"]) / row["p_before"])
    unrelated = table.query("fact == 1 and prompts == 'unrelated'")
    bag_means = {f: clean[value.rows["fact"].to_numpy() == f].mean() for f in (2, 3)}  # other attributes only
    assert unrelated["p_before"].nunique() == 1
    assert min(abs(unrelated["p_before"].iloc[0] - x) for x in bag_means.values()) < 1e-9
    again = interventions(model, bags, neurons, np.random.default_rng(0), batch_size=64)
    pd.testing.assert_frame_equal(again, table, rtol=1e-5)


# ---- edit -----------------------------------------------------------------------------------------------------------
def edit_setup(family="gpt2", **extra):
    """A random model, bags whose targets are its own top-1 tokens, and per fact the 3 last-layer neurons
    most active on all its prompts (positive: adding a direction to their slots pushes it)."""
    hf = random_model(family, std=0.3, **extra)
    model = CircuitModel(hf)
    m, L = d_mlp(model), model.n_layers
    bags = make_bags(model, [("city", 3), ("city", 3), ("city", 2), ("major", 3), ("major", 2)], top1=True, seed=3)
    with torch.no_grad():
        hidden = model.run(bags.ids, bags.last, cache="mlp_hidden")[1]["mlp_hidden"][L - 1]  # [Q, m]
    neurons = {}
    for fact in range(5):
        weakest = hidden[torch.tensor((bags.rows["fact"] == fact).to_numpy())].min(0).values  # [m]
        neurons[fact] = np.sort((L - 1) * m + weakest.topk(3).indices.numpy())
    values = [("city", f"c{t}", t) for t in range(1, V, 3)] + [("major", f"m{t}", t) for t in range(2, V, 3)]
    return hf, model, bags, neurons, pd.DataFrame(values, columns=["attribute", "value", "token"])


def test_a_large_lambda2_makes_the_new_token_the_top_1_and_the_weights_come_back():
    hf, model, bags, neurons, candidates = edit_setup()
    before = snapshot(hf)
    table = edits(model, bags, neurons, {}, candidates, lambda1=0.0, lambda2=50.0, facts_per_attribute=10,
                  ppl_facts=5, rng=np.random.default_rng(0), batch_size=4)
    assert_unchanged(hf, before)
    assert list(table.columns) == FACT_COLUMNS + EDIT_COLUMNS and len(table) == 5
    assert table["success_at_1"].all() and table["success_at_5"].all() and table["changed"].all()
    assert (table["rank_after"] == 0).all() and (table["prob_after"] > table["prob_before"]).all()
    assert (table["new_token"] != table["old_token"]).all()
    own = candidates.set_index("value")
    assert all(own.at[v, "attribute"] == a and own.at[v, "token"] == t
               for v, a, t in zip(table["new_value"], table["attribute"], table["new_token"]))
    assert (table["n_neurons"] == 3).all()
    assert table["ppl_intra_before"].notna().all() and table["ppl_inter_before"].notna().all()


def test_a_zero_edit_changes_nothing_and_relation_neurons_and_wrong_facts_are_left_out():
    hf, model, bags, neurons, candidates = edit_setup()
    same = edits(model, bags, neurons, {}, candidates, lambda1=0.0, lambda2=0.0, rng=np.random.default_rng(1))
    assert len(same) == 5 and not same["changed"].any()
    np.testing.assert_allclose(same["prob_after"], same["prob_before"], rtol=1e-6)
    assert (same["rank_after"] == same["rank_before"]).all()
    for scope in ("intra", "inter"):
        np.testing.assert_allclose(same[f"ppl_{scope}_after"], same[f"ppl_{scope}_before"], rtol=1e-6)
    # fact 0's neurons are all relation-level; fact 3's gold is not its top-1; at most one fact per attribute
    wrong = bags.targets.clone()
    wrong[torch.tensor((bags.rows["fact"] == 3).to_numpy())] = 0
    bags = Bags(bags.ids, bags.last, wrong, bags.rows.assign(target=wrong.numpy()))
    city_relation = {"city": neurons[0]}
    table = edits(model, bags, neurons, city_relation, candidates, lambda1=1.0, lambda2=8.0, facts_per_attribute=1,
                  rng=np.random.default_rng(1))
    assert len(table) == 2 and set(table["attribute"]) == {"city", "major"}
    assert not set(table["fact"]) & {0, 3}
    city = table[table["attribute"] == "city"].iloc[0]
    assert city["n_neurons"] == len(np.setdiff1d(neurons[city["fact"]], neurons[0]))


# ---- erase ---------------------------------------------------------------------------------------------------------
def test_frequent_neurons_break_ties_by_index():
    by_fact = {0: [5, 9, 2], 1: [9, 2, 7], 2: [9, 7, 1], 3: [3]}
    assert frequent_neurons(by_fact, 1).tolist() == [9]
    assert frequent_neurons(by_fact, 3).tolist() == [2, 7, 9]  # 2 and 7 twice
    assert frequent_neurons(by_fact, 4).tolist() == [1, 2, 7, 9]  # then the lowest of the singles
    assert frequent_neurons({}, 3).tolist() == []


def test_erase_zeroes_the_attributes_neurons_everywhere_and_restores_them():
    hf = random_model("gpt2", std=0.3)
    model = CircuitModel(hf)
    m = d_mlp(model)
    bags = make_bags(model, [("city", 3), ("city", 2), ("major", 3)], original=1, seed=5)
    neurons = {0: np.array([3, m + 4]), 1: np.array([m + 4, m + 9]), 2: np.array([7])}
    before = snapshot(hf)
    table = erase(model, bags, neurons, n_neurons=2, batch_size=3)
    assert_unchanged(hf, before)
    assert list(table.columns) == ERASE_COLUMNS
    assert table[["attribute", "scope"]].values.tolist() == [["city", "erased"], ["city", "other"],
                                                             ["major", "erased"], ["major", "other"]]
    assert table["n_neurons"].tolist() == [2, 2, 1, 1] and table["n_prompts"].tolist() == [5, 3, 3, 5]
    value = bags.select(bags.rows["target_kind"] == "value")

    def scores(units):  # accuracy and PPL per prompt on the HF model, units zeroed at every position
        out = []
        for q in range(len(value)):
            logits = hf_scaled(hf, value.ids[q, : value.last[q] + 1], units, 0.0, last_only=False)[-1]
            out.append((bool((logits > logits[value.targets[q]]).sum() == 0),
                        float(torch.log_softmax(logits, -1)[value.targets[q]])))
        return np.array(out)

    city = value.rows["attribute"].to_numpy() == "city"
    clean, erased = scores({}), scores({0: [3], 1: [4]})  # city: neurons 3 and m + 4 (the most frequent)
    row = table.iloc[0]
    assert row["accuracy_before"] == pytest.approx(clean[city, 0].mean())
    assert row["accuracy_after"] == pytest.approx(erased[city, 0].mean())
    assert row["ppl_before"] == pytest.approx(np.exp(-clean[city, 1].mean()), rel=1e-5)
    assert row["ppl_after"] == pytest.approx(np.exp(-erased[city, 1].mean()), rel=1e-5)
    assert row["ppl_after"] != pytest.approx(row["ppl_before"])
    other = table.iloc[1]
    assert other["ppl_after"] == pytest.approx(np.exp(-erased[~city, 1].mean()), rel=1e-5)


# ---- the unedited forward, shared ------------------------------------------------------------------------------
def test_the_unedited_scores_once_give_every_experiment_the_numbers_of_its_own_forward():
    """unedited_scores are the value prompts' target_scores; interventions, edits and erase given them
    return exactly the tables they compute with their own unedited forward."""
    hf, model, bags, neurons, candidates = edit_setup()
    mixed = make_bags(model, [("city", 3), ("city", 2), ("major", 3)], original=1, seed=5)
    value = mixed.select(mixed.rows["target_kind"] == "value")
    shared = unedited_scores(model, mixed, batch_size=3)
    own = target_scores(model, value.ids, value.last, value.targets, 3)
    assert all(np.array_equal(a, b) for a, b in zip(shared, own)) and len(shared[0]) == len(value)
    m = d_mlp(model)
    found = {0: np.array([3, m + 4]), 1: np.array([m + 4, m + 9]), 2: np.array([7])}
    pd.testing.assert_frame_equal(
        interventions(model, mixed, found, np.random.default_rng(0), 3, unedited=shared),
        interventions(model, mixed, found, np.random.default_rng(0), 3), check_exact=True)
    pd.testing.assert_frame_equal(erase(model, mixed, found, 2, 3, unedited=shared), erase(model, mixed, found, 2, 3),
                                  check_exact=True)
    kwargs = {"lambda1": 1.0, "lambda2": 8.0, "batch_size": 4}
    shared = unedited_scores(model, bags, batch_size=4)
    alone = edits(model, bags, neurons, {}, candidates, rng=np.random.default_rng(2), **kwargs)
    assert len(alone)
    pd.testing.assert_frame_equal(
        edits(model, bags, neurons, {}, candidates, rng=np.random.default_rng(2), unedited=shared, **kwargs),
        alone, check_exact=True)
