"""The inner loop: write a context's facts into a copy of the weights in a few gradient steps.

theta' starts as the model's own parameters (a dict of tensors, so the outer loss back-propagates
into theta through every step) and takes N steps on the causal-LM loss of the facts:

    theta'_{k+1} = theta'_k - rate[k] * u_k          u_k = g_k (sgd) or Adam's m/sqrt(v) (adam)

with g_k = grad of the facts' loss at theta'_k (torch.func.grad over functional_call) and one
learned rate per adapted parameter tensor and per step (RECKONING's LSLR: the rates are parameters
of the outer optimiser; a step past the learned ones reuses the last rate). Second order by default:
g_k stays on the autograd graph, so the outer gradient flows through it; first_order detaches it.
The attention must be the eager one: PyTorch's fused CPU attention has no second derivative.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.func import functional_call, grad

# Which parameters the inner loop adapts (reckoning.inner.adapt): name fragments, None = all.
ADAPT = {"all": None, "mlp": (".mlp.",), "attention": (".attn.", ".attention.", ".self_attn.")}
ADAM_BETAS = (0.9, 0.95)  # the original's inner AdamW
ADAM_EPS = 1e-8


def adapted_names(model: torch.nn.Module, adapt: str) -> list[str]:
    """Names of the parameters the inner loop updates, in the model's order."""
    if adapt not in ADAPT:
        raise ValueError(f"reckoning.inner.adapt: {adapt!r} is not one of {sorted(ADAPT)}")
    parts = ADAPT[adapt]
    names = [n for n, p in model.named_parameters()
             if p.requires_grad and (parts is None or any(s in n for s in parts))]
    if not names:
        raise ValueError(f"reckoning.inner.adapt: {adapt!r} selects no parameter of this model")
    return names


class LearnedRates(torch.nn.Module):
    """One learning rate per adapted tensor and per inner step: rates[i] [steps] for names[i]."""

    def __init__(self, names: list[str], steps: int, lr: float, learn: bool = True):
        super().__init__()
        if steps < 1:
            raise ValueError(f"reckoning.inner.steps must be >= 1, got {steps}")
        self.names, self.steps = list(names), steps
        self.rates = torch.nn.ParameterList(torch.nn.Parameter(torch.full((steps,), float(lr)), requires_grad=learn)
                                            for _ in self.names)

    def at(self, step: int) -> dict[str, torch.Tensor]:
        """Every tensor's rate at inner step `step` (0-based; past the last, the last)."""
        k = min(step, self.steps - 1)
        return {name: rate[k] for name, rate in zip(self.names, self.rates)}


def forward(model: torch.nn.Module, params: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits [B, T, V] of a right-padded batch with `params` in place of the model's own (the rest
    are the model's)."""
    return functional_call(model, params, (batch["input_ids"],), {"attention_mask": batch["attention_mask"]}).logits


def adapted(model: torch.nn.Module, rates: "LearnedRates") -> dict[str, torch.Tensor]:
    """theta'_0: the model's own parameters the inner loop adapts (those with learned rates)."""
    names = set(rates.names)
    return {name: p for name, p in model.named_parameters() if name in names}


def lm_loss(model: torch.nn.Module, params: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the labelled tokens (labels != -100) of a right-padded batch, with
    `params` in place of the model's own (the rest are the model's)."""
    logits = forward(model, params, batch)  # [B, T, V]
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(),
                                             ignore_index=-100)


def encode_steps(model: torch.nn.Module, rates: LearnedRates, facts: dict[str, torch.Tensor], steps: int,
                 first_order: bool = False, optimizer: str = "sgd") -> Iterator[dict[str, torch.Tensor]]:
    """theta'_1 ... theta'_steps (the adapted tensors only), one after each inner step.

    The model's own parameters are theta'_0; with torch.no_grad() outside, nothing is kept for the
    outer loss (evaluation), else every step stays differentiable in theta and the rates.
    """
    params = adapted(model, rates)
    loss_grad = grad(lambda p: lm_loss(model, p, facts))
    moments = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in params.items()}
    for k in range(steps):
        with torch.enable_grad():
            g = loss_grad(params)
        if first_order:
            g = {name: v.detach() for name, v in g.items()}
        update = g if optimizer == "sgd" else _adam(g, moments, k + 1)
        rate = rates.at(k)
        params = {name: p - rate[name] * update[name] for name, p in params.items()}
        yield params


def _adam(g: dict, moments: dict, t: int) -> dict:
    """Adam's bias-corrected direction m_hat / sqrt(v_hat + eps^2), moments updated in `moments`.
    eps inside the root keeps its derivative finite where a gradient is exactly zero."""
    b1, b2 = ADAM_BETAS
    out = {}
    for name, gk in g.items():
        m, v = moments[name]
        m, v = b1 * m + (1 - b1) * gk, b2 * v + (1 - b2) * gk * gk
        moments[name] = (m, v)
        out[name] = (m / (1 - b1 ** t)) / torch.sqrt(v / (1 - b2 ** t) + ADAM_EPS ** 2)
    return out


def encode(model: torch.nn.Module, rates: LearnedRates, facts: dict[str, torch.Tensor], steps: int,
           first_order: bool = False, optimizer: str = "sgd") -> dict[str, torch.Tensor]:
    """theta' after `steps` inner steps (0: the model's own adapted parameters)."""
    params = adapted(model, rates)
    for params in encode_steps(model, rates, facts, steps, first_order, optimizer):
        pass
    return params


def use_eager_attention(model: torch.nn.Module) -> torch.nn.Module:
    """The eager attention, which has a second derivative (the fused CPU kernel does not)."""
    model.set_attn_implementation("eager")
    return model
