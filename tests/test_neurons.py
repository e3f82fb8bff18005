"""Knowledge-neuron attribution (kcircuits.neurons.attribute): against a straightforward reference loop
over the Hugging Face model itself, completeness, and independence of batching and prompt order. Tiny
random models; one thread (the machine is shared)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import V, down_proj, hf_with_last_hidden, random_model
from kcircuits.circuits.model import CircuitModel
from kcircuits.neurons.attribute import alphas, attribute, hidden_activations
from kcircuits.neurons.facts import prompt_rows, sample_facts
from kcircuits.neurons.select import (
    circuit_overlap,
    coarse,
    knowledge_neurons,
    refine,
    relation_neurons,
    select_attribute,
)
from kcircuits.neurons.store import dense, top_rows

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = torch.randint(1, V, (4, 6), generator=torch.Generator().manual_seed(1))  # [P, T], right-padded
LAST = torch.tensor([5, 3, 5, 2])
TARGETS = torch.tensor([7, 19, 33, 50])


def reference(hf, layer: int, steps: int, points: str) -> torch.Tensor:
    """The loop public implementations run: one prompt, one layer, one point at a time, on the HF
    model (a pre-hook on the down projection), gradient of softmax P(target). -> [P, m]"""
    out = []
    for p in range(len(IDS)):
        ids = IDS[p, : LAST[p] + 1]
        with torch.no_grad():
            clean = {}
            handle = _down_input(hf, layer, clean)
            hf(ids[None])
            handle.remove()
        a = clean["x"][0, -1]  # [m]
        grads = []
        for alpha in alphas(steps, points):
            scaled = (alpha * a).requires_grad_(True)
            prob = torch.softmax(hf_with_last_hidden(hf, ids, layer, scaled), -1)[TARGETS[p]]
            grads.append(torch.autograd.grad(prob, scaled)[0])
        out.append(a * torch.stack(grads).mean(0))
    return torch.stack(out)


def _down_input(hf, layer, into):
    """A pre-hook that keeps the input of the layer's down projection (its MLP hidden activations)."""
    return down_proj(hf, layer).register_forward_pre_hook(lambda m, args: into.setdefault("x", args[0].detach()))


def test_points():
    assert alphas(4, "left").tolist() == [0.0, 0.25, 0.5, 0.75]  # the original code: never reaches a
    assert alphas(5, "grid").tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]  # EleutherAI: both ends
    with pytest.raises(ValueError):
        alphas(4, "right")


@pytest.mark.parametrize("family,extra", [("gpt2", {}), ("llama", {"num_key_value_heads": 2}), ("gpt_neox", {}),
                                          ("gpt_neox", {"use_parallel_residual": False})])
@pytest.mark.parametrize("points", ["left", "grid"])
def test_attribution_equals_the_reference_loop_on_the_hf_model(family, extra, points):
    hf = random_model(family, std=0.3, **extra)
    scores = attribute(CircuitModel(hf), IDS, LAST, TARGETS, steps=5, points=points)  # [L, P, m]
    for layer in range(scores.shape[0]):
        torch.testing.assert_close(scores[layer], reference(hf, layer, 5, points), atol=1e-6, rtol=1e-4)


def test_a_layers_attributions_sum_to_the_effect_of_zeroing_it():
    """Completeness: with many points, sum_i attribution_i = P(target | a) - P(target | a = 0)."""
    model = CircuitModel(random_model("gpt2", std=0.3))
    hidden = hidden_activations(model, IDS, LAST)  # [L, P, m]
    rows = torch.arange(len(IDS))
    with torch.no_grad():
        full = torch.softmax(model.run(IDS, LAST), -1)[rows, TARGETS]
    for layer in range(hidden.shape[0]):
        with torch.no_grad():
            zeroed = model.run(IDS, LAST, replace_mlp_hidden={layer: torch.zeros_like})
        effect = full - torch.softmax(zeroed, -1)[rows, TARGETS]  # [P]
        total = {m: attribute(model, IDS, LAST, TARGETS, steps=m, points="grid", layers=[layer])[layer].sum(-1)
                 for m in (3, 200)}
        assert effect.abs().min() > 1e-4  # a real effect to account for
        torch.testing.assert_close(total[200], effect, atol=2e-4, rtol=2e-2)
        assert (total[200] - effect).abs().sum() < (total[3] - effect).abs().sum()  # converges with m


def test_scores_do_not_depend_on_batching_or_prompt_order():
    model = CircuitModel(random_model("gpt2", std=0.3))
    whole = attribute(model, IDS, LAST, TARGETS, steps=4, batch_size=1000)
    for batch_size in (4, 8, 16):  # one prompt, two prompts, every prompt of one layer per forward
        torch.testing.assert_close(attribute(model, IDS, LAST, TARGETS, steps=4, batch_size=batch_size), whole,
                                   atol=1e-7, rtol=1e-5)
    order = torch.tensor([2, 0, 3, 1])
    shuffled = attribute(model, IDS[order], LAST[order], TARGETS[order], steps=4)
    torch.testing.assert_close(shuffled, whole[:, order], atol=1e-7, rtol=1e-5)


def test_attribution_matches_the_integral_on_a_one_layer_model():
    """On a one-layer GPT-2 the last position's P(target) as a function of the MLP hidden activations h is
    explicit: softmax(W_U ln_f(mid + W_out h + b_out))[target], mid the residual stream after attention
    (read off the HF model with hooks, not CircuitModel). Its integral a_i * int_0^1 dP/dh_i(alpha a)
    dalpha, in float64 by 64-point Gauss-Legendre (the integrand is analytic: exact to rounding), is
    matched by attribute with many points; the left Riemann sum converges to it as the Euler-Maclaurin
    formula says: m * (left_m - I) -> -(g(1) - g(0)) / 2, g(alpha) = a * dP/dh(alpha a)."""
    hf = random_model("gpt2", layers=1, std=0.3).eval()  # eval: no dropout
    block, ln_f = hf.transformer.h[0], hf.transformer.ln_f
    w_out, b_out = block.mlp.c_proj.weight.double(), block.mlp.c_proj.bias.double()  # Conv1D [neurons, d], [d]
    w_ln, b_ln, w_u = ln_f.weight.double(), ln_f.bias.double(), hf.lm_head.weight.double()  # w_u [V, d]

    def prob(h, mid, target):  # h [N, neurons], mid [d] -> P(target) [N], the explicit formula
        x = mid + h @ w_out + b_out
        x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + ln_f.eps)
        return torch.softmax((x * w_ln + b_ln) @ w_u.T, -1)[:, target]

    def g(alpha, a, mid, target):  # alpha [N] -> a * dP/dh at alpha * a, [N, neurons]
        h = (alpha[:, None] * a).requires_grad_(True)
        return a * torch.autograd.grad(prob(h, mid, target).sum(), h)[0]

    nodes, weights = (torch.from_numpy(v) for v in np.polynomial.legendre.leggauss(64))
    alpha, weights = (nodes + 1) / 2, weights / 2  # Gauss-Legendre on [0, 1]
    integral, slope = [], []  # [P, neurons] each: I, and -(g(1) - g(0)) / 2
    for p in range(len(IDS)):
        kept = {}  # the hooks return None: a pre-hook's return value replaces the module's input
        hooks = [block.ln_2.register_forward_pre_hook(lambda m, x: kept.update(mid=x[0][0, -1])),
                 block.mlp.c_proj.register_forward_pre_hook(lambda m, x: kept.update(a=x[0][0, -1]))]
        with torch.no_grad():
            hf(IDS[p, : LAST[p] + 1][None])
        for hook in hooks:
            hook.remove()
        a, mid = kept["a"].double(), kept["mid"].double()
        integral.append(weights @ g(alpha, a, mid, TARGETS[p]))
        ends = g(torch.tensor([0.0, 1.0], dtype=torch.float64), a, mid, TARGETS[p])
        slope.append((ends[0] - ends[1]) / 2)
        with torch.no_grad():  # the quadrature itself: its sum is P(a) - P(0) (fundamental theorem)
            effect = prob(torch.stack([a, torch.zeros_like(a)]), mid, TARGETS[p])
        assert abs(integral[-1].sum() - (effect[0] - effect[1])) < 1e-12
    integral, slope = torch.stack(integral).float(), torch.stack(slope).float()
    scale = integral.abs().max()
    assert scale > 1e-3 and slope.abs().max() > 1e-3  # a real, curved path

    model = CircuitModel(hf)

    def run(m, points):  # layer 0's scores [P, neurons] with m points
        return attribute(model, IDS, LAST, TARGETS, steps=m, points=points, batch_size=8192)[0]

    torch.testing.assert_close(run(2000, "grid"), integral, rtol=0, atol=1e-3 * scale)  # O(1/m) from I
    errors = {m: run(m, "left") - integral for m in (10, 100, 1000)}
    for m, error in errors.items():  # the next term is O(1/m); float32 rounding grows as m * eps
        torch.testing.assert_close(m * error, slope, rtol=0, atol=2 * slope.abs().max() / m + 1e-6 * m * scale)
    sizes = [errors[m].abs().max().item() for m in (10, 100, 1000)]
    assert sizes[0] > 5 * sizes[1] > 25 * sizes[2]  # ~10x smaller per 10x points


# ---- selection (kcircuits.neurons.select) ---------------------------------------------------------------
def test_coarse_keeps_a_share_of_each_prompts_maximum():
    scores = [[1.0, 0.2, 0.19, -3.0], [0.0, -1.0, 0.0, 0.0], [0.5, 0.5, 0.05, 0.1]]
    assert coarse(scores, 0.2).tolist() == [[True, True, False, False], [False] * 4, [True, True, False, True]]


def test_refined_neurons_need_p_of_the_bag_and_at_least_three_prompts():
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0]], dtype=bool)  # 4 prompts, 3 neurons
    assert refine(mask, 0.7).tolist() == [0, 1]  # needs max(2.8, 3) = 3 prompts
    assert refine(mask, 0.9).tolist() == [0]  # needs 3.6
    assert refine(mask[:2], 0.1).tolist() == []  # two prompts can never make three


def test_p_moves_until_the_mean_count_lies_in_the_band():
    # neuron j is coarse in the first 10 - j of 10 prompts: at p, neurons j <= 10 * (1 - p) are refined
    mask = np.array([[i < 10 - j for j in range(10)] for i in range(10)])
    neurons, p = select_attribute({"a": mask, "b": mask}, p=1.0)  # 1 neuron each: too few
    assert p == pytest.approx(0.9) and len(neurons["a"]) == 2  # lowered twice (0.95 still gives 1)
    neurons, p = select_attribute({"a": mask}, p=0.3)  # 8 neurons: too many
    assert p == pytest.approx(0.55) and len(neurons["a"]) == 5  # raised five times
    stuck, p = select_attribute({"a": np.zeros((10, 4), dtype=bool)}, p=0.7, rounds=6)
    assert p == pytest.approx(0.4) and len(stuck["a"]) == 0  # gives up after 6 rounds
    kn = {f: np.array(n) for f, n in zip("abcdefghij", [[1, 2]] + [[2, 3]] * 9)}
    assert relation_neurons(kn, 0.1).tolist() == [1, 2, 3]  # 1 is a KN of 1/10 facts: >= 10%
    assert relation_neurons(kn, 0.2).tolist() == [2, 3]


# ---- storage, facts, the per-checkpoint selection -----------------------------------------------------
def test_stored_top_scores_give_the_exact_coarse_selection():
    scores = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))  # [Q, N]
    scores[3] = -scores[3].abs()  # a prompt without a positive score keeps nothing
    sparse = {k: v.numpy() for k, v in top_rows(scores, 0.1).items()}
    assert sparse["indptr"][4] == sparse["indptr"][3]
    kept = dense(sparse, np.arange(6), 40)
    full = scores.numpy()
    for t in (0.1, 0.2, 0.5):
        assert (coarse(kept, t) == coarse(full, t)).all()
    assert np.allclose(kept[kept != 0], full[kept != 0])  # what is kept is the score itself


def _probes(n_entities: int = 6) -> pd.DataFrame:
    rows = [{"entity_id": e, "name": f"E{e}", "type": "new" if e % 2 else "revised", "freq_group": "high",
             "frequency": 7, "attribute": attr, "template": t, "prompt": f"E{e} {attr} {t}", "answer": f"v{e}",
             "orig_answer": None if e % 2 else f"o{e}"}
            for e in range(n_entities) for attr in ("city", "major") for t in range(4)]
    return pd.DataFrame(rows)


def test_facts_are_sampled_per_cell_with_their_whole_bags():
    probes = _probes()
    bags = sample_facts(probes, 2, np.random.default_rng(0))
    facts = bags.drop_duplicates("fact")
    assert facts.groupby(["type", "attribute"]).size().tolist() == [2, 2, 2, 2]  # 2 per type x group x attribute
    assert (bags.groupby("fact").size() == 4).all()  # every template of the fact
    assert bags.equals(sample_facts(probes, 2, np.random.default_rng(0)))  # deterministic
    assert len(sample_facts(probes, 10, np.random.default_rng(0))) == len(probes)  # all where fewer
    rows = prompt_rows(bags)
    assert set(rows.loc[rows["target_kind"] == "original", "type"]) == {"revised"}
    assert rows.loc[rows["target_kind"] == "original", "answer"].str.startswith("o").all()


def test_knowledge_neurons_of_a_checkpoint():
    """Two facts of one attribute, 4 prompts each, 2 layers x 5 neurons: fact 0 has neuron 7 (layer 1)
    in every prompt and neuron 2 in two; fact 1 has neuron 3 in three prompts."""
    scores = np.full((8, 10), 0.01, dtype=np.float32)
    scores[:4, 7], scores[:2, 2], scores[4:7, 3] = 1.0, 0.5, 1.0
    scores[7, 9] = 1.0
    prompts = pd.DataFrame({"fact": [0] * 4 + [1] * 4, "entity_id": [0] * 4 + [1] * 4, "name": "x",
                            "type": "new", "freq_group": "high", "frequency": 7, "attribute": "city",
                            "target_kind": "value", "prob": 0.5})
    sparse = {"ig": {k: v.numpy() for k, v in top_rows(torch.from_numpy(scores), 0.1).items()}}
    settings = {"share": {"start": 0.7, "step": 0.05, "rounds": 0, "band": [2, 5]}, "min_prompts": 3,
                "relation_share": 0.5}
    facts, neurons, found, relation = knowledge_neurons(prompts, sparse, 10, 5, settings, {"ig": 0.2})
    assert {k: v.tolist() for k, v in found["value", "ig"].items()} == {0: [7], 1: [3]}
    assert facts["n_neurons"].tolist() == [1, 1] and facts["mean_layer"].tolist() == [1.0, 0.0]
    assert neurons[["fact", "layer", "neuron", "n_coarse"]].values.tolist() == [[0, 1, 2, 4], [1, 0, 3, 3]]
    assert neurons["score"].tolist() == pytest.approx([1.0, 0.75])  # mean over the bag, 0 where not kept
    assert neurons["relation"].all() and relation["value", "ig"]["city"].tolist() == [3, 7]  # each in 1/2 facts


def test_the_neuron_table_is_the_concatenation_of_one_frame_per_fact():
    """_neuron_table builds the table at once: the same values and column types as a frame per fact
    concatenated (facts without neurons included)."""
    from kcircuits.neurons.select import NEURON_COLUMNS, _neuron_table

    rows = []
    for fact, n in enumerate([2, 0, 3]):
        head = {"fact": fact, "entity_id": 10 + fact, "name": f"e{fact}", "type": "new", "freq_group": "low",
                "frequency": 1, "attribute": "city", "target_kind": "value", "method": "ig"}
        idx = np.arange(n, dtype=np.int64) * 3 + fact
        rows.append((head, {"index": idx, "layer": idx // 5, "neuron": idx % 5,
                            "score": np.linspace(0, 1, n, dtype=np.float32),
                            "n_coarse": np.ones((4, n), dtype=bool).sum(0), "relation": idx % 2 == 0}))
    frames = [pd.DataFrame({**head, **cols}, columns=NEURON_COLUMNS) for head, cols in rows]
    pd.testing.assert_frame_equal(_neuron_table(rows), pd.concat(frames, ignore_index=True), check_exact=True)


def test_overlap_counts_neurons_whose_mlp_is_in_the_circuit():
    neurons = pd.DataFrame({"type": "new", "freq_group": "high", "attribute": ["city"] * 3 + ["birthday"],
                            "method": "ig", "target_kind": "value", "index": [1, 6, 7, 1], "layer": [0, 1, 1, 0]})
    circuits = pd.DataFrame({"task": "city", "type": "new", "freq_group": "high", "budget": ["0.1", "0.1", "5"],
                             "parent": ["input", "m1", "input"], "child": ["a0.h1<q>", "logits", "m0"]})
    out = circuit_overlap(neurons, circuits).set_index("budget")
    assert out.loc["0.1", ["n_neurons", "n_in_circuit"]].tolist() == [3, 2]  # m1 in, m0 not
    assert out.loc["5", "share"] == pytest.approx(1 / 3)
    assert set(out["attribute"]) == {"city"}  # no circuit for birthday
