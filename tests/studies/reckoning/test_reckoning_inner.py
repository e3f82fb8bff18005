"""RECKONING's inner loop and outer loss (kcircuits.studies.reckoning.inner / train / batches) on tiny models:
a zero rate encodes nothing, the outer gradient through the inner loop is the true derivative
(finite differences), the learned rates are trained, first order drops exactly the second-order
term, and the answer scores mean what they say."""
from __future__ import annotations

import pytest
import torch

from helpers import V, random_model
from kcircuits.studies.reckoning.batches import IGNORE, answer_scores, pad
from kcircuits.studies.reckoning.inner import LearnedRates, adapted_names, encode, lm_loss, use_eager_attention
from kcircuits.studies.reckoning.train import method_loss


def _model(double: bool = True):
    model = use_eager_attention(random_model(d=16, std=0.1))
    return model.double() if double else model


def _rows(seed: int, n: int, length: int, masked: int):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(1, V, (length,), generator=g).tolist()
        rows.append((ids, [IGNORE] * masked + ids[masked:]))
    return pad(rows, pad_id=0)


FACTS, ASK = _rows(0, 3, 7, 2), _rows(1, 2, 6, 4)
INNER = {"steps": 1, "lr": 0.3, "adapt": "all", "learn_rates": True, "first_order": False, "optimizer": "sgd"}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_zero_rate_leaves_theta_prime_equal_to_theta(optimizer):
    model = _model(double=False)
    rates = LearnedRates(adapted_names(model, "all"), 3, 0.0)
    theta = dict(model.named_parameters())
    encoded = encode(model, rates, FACTS, 3, optimizer=optimizer)
    assert set(encoded) == set(theta)
    for name, p in encoded.items():
        assert torch.equal(p, theta[name]), name


def test_the_inner_loop_writes_the_facts():
    model = _model()
    rates = LearnedRates(adapted_names(model, "all"), 4, 0.5)
    with torch.no_grad():
        before = float(lm_loss(model, {}, FACTS))
        after = float(lm_loss(model, encode(model, rates, FACTS, 4), FACTS))
    assert after < 0.7 * before


def _outer(model, rates, first_order=False):
    params = encode(model, rates, FACTS, 1, first_order)
    return lm_loss(model, params, ASK)


def _finite_difference(f, eps=1e-6) -> float:
    return (f(eps) - f(-eps)) / (2 * eps)


def test_outer_gradient_through_one_inner_step_matches_finite_differences():
    model = _model()
    rates = LearnedRates(adapted_names(model, "all"), 1, 0.3).double()
    weight = dict(model.named_parameters())["transformer.h.0.mlp.c_fc.weight"]
    loss = _outer(model, rates)
    g_weight, g_rate = torch.autograd.grad(loss, [weight, rates.rates[5]])

    def shift_weight(eps):
        with torch.no_grad():
            weight[3, 5] += eps
            value = float(_outer(model, rates))
            weight[3, 5] -= eps
        return value

    def shift_rate(eps):
        with torch.no_grad():
            rates.rates[5][0] += eps
            value = float(_outer(model, rates))
            rates.rates[5][0] -= eps
        return value

    assert float(g_weight[3, 5]) == pytest.approx(_finite_difference(shift_weight), rel=1e-5, abs=1e-10)
    assert float(g_rate[0]) == pytest.approx(_finite_difference(shift_rate), rel=1e-5, abs=1e-10)
    assert float(g_weight[3, 5]) != 0.0


def test_first_order_drops_the_second_order_term_only():
    model = _model()
    rates = LearnedRates(adapted_names(model, "all"), 1, 0.3).double()
    weight = dict(model.named_parameters())["transformer.h.0.mlp.c_fc.weight"]
    second = torch.autograd.grad(_outer(model, rates), [weight, rates.rates[5]])
    first = torch.autograd.grad(_outer(model, rates, first_order=True), [weight, rates.rates[5]])
    assert not torch.allclose(second[0], first[0])  # the Hessian term is gone
    assert torch.allclose(second[1], first[1])  # d loss / d rate needs no second derivative at step 1


@pytest.mark.parametrize("method", ["reckoning", "reckoning_mt"])
def test_learned_rates_receive_gradients(method):
    model = _model(double=False)
    rates = LearnedRates(adapted_names(model, "all"), 2, 0.1)
    batches = {"facts": FACTS, "ask": ASK, "recite": _rows(2, 2, 5, 1)}
    method_loss(model, rates, batches, method, {**INNER, "steps": 2}).backward()
    grads = torch.stack([r.grad for r in rates.rates])  # [tensors, steps]
    assert torch.isfinite(grads).all() and (grads.abs().sum(dim=0) > 0).all()


def test_an_mlp_only_inner_loop_adapts_only_mlps():
    model = _model(double=False)
    names = adapted_names(model, "mlp")
    assert names and all(".mlp." in n for n in names)
    encoded = encode(model, LearnedRates(names, 1, 0.5), FACTS, 1)
    assert set(encoded) == set(names)
    with pytest.raises(ValueError, match="reckoning.inner.adapt"):
        adapted_names(model, "embeddings")


def test_answer_scores_read_greedy_exactness_and_the_first_token_rank():
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4], [IGNORE, 2, 1, IGNORE]])
    logits = torch.zeros(2, 4, 5)
    logits[0, 1, 3], logits[0, 2, 4] = 1.0, 1.0  # row 0: both answer tokens the argmax
    logits[1, 0, 2], logits[1, 0, 0] = 1.0, 2.0  # row 1: first token second best, the next wrong
    logits[1, 1, 0] = 1.0
    exact, rank = answer_scores(logits, labels)
    assert exact.tolist() == [True, False]
    assert rank.tolist() == [1, 2]
