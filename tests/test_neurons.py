"""Knowledge-neuron attribution (kcircuits.neurons.attribute): against a straightforward reference loop
over the Hugging Face model itself, completeness, and independence of batching and prompt order. Tiny
random models; one thread (the machine is shared)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import V, down_proj, hf_with_last_hidden, random_model
from kcircuits.circuits.model import CircuitModel
from kcircuits.neurons.attribute import alphas, attribute, hidden_activations
from kcircuits.neurons.select import coarse, refine, relation_neurons, select_attribute

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


@pytest.mark.parametrize("family,extra", [("gpt2", {}), ("llama", {"num_key_value_heads": 2})])
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
            zeroed = model.run(IDS, LAST, replace_mlp_hidden=(layer, torch.zeros_like(hidden[layer])))
        effect = full - torch.softmax(zeroed, -1)[rows, TARGETS]  # [P]
        total = {m: attribute(model, IDS, LAST, TARGETS, steps=m, points="grid", layers=[layer])[layer].sum(-1)
                 for m in (3, 200)}
        assert effect.abs().min() > 1e-4  # a real effect to account for
        torch.testing.assert_close(total[200], effect, atol=2e-4, rtol=2e-2)
        assert (total[200] - effect).abs().sum() < (total[3] - effect).abs().sum()  # converges with m


def test_scores_do_not_depend_on_batching_or_prompt_order():
    model = CircuitModel(random_model("gpt2", std=0.3))
    whole = attribute(model, IDS, LAST, TARGETS, steps=4, batch_size=1000)
    torch.testing.assert_close(attribute(model, IDS, LAST, TARGETS, steps=4, batch_size=4), whole,
                               atol=1e-7, rtol=1e-5)  # one prompt per forward
    order = torch.tensor([2, 0, 3, 1])
    shuffled = attribute(model, IDS[order], LAST[order], TARGETS[order], steps=4)
    torch.testing.assert_close(shuffled, whole[:, order], atol=1e-7, rtol=1e-5)


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
