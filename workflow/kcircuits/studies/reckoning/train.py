"""The outer loop: train a method on the training contexts, keep the epoch best on validation.

Every method starts from the same main-study checkpoint and gets the same budget (epochs over the
same contexts, AdamW, batch of contexts, clipping) -- only what the loss sees differs:
  reckoning      CE(answer | question) under theta' = the inner loop's encoding of the facts,
                 back-propagated through the inner loop into theta and the learned rates
  reckoning_mt   the same + CLM of the question's relevant facts under theta' (recitation)
  ft_icr         CE(answer | facts in context + question), fine-tuning theta (FT-ICR)
  no_facts       CE(answer | question alone)
  random_facts   CE(answer | another context's facts + question)
A trained method is a model folder (safetensors) plus rates.safetensors and train.json.
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import numpy as np
import torch

from . import ENCODED, METHODS
from .batches import answer_scores
from .inner import LearnedRates, adapted_names, encode, forward, lm_loss

log = logging.getLogger("kcircuits.studies.reckoning")


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"reckoning.methods: unknown method {method!r} (one of {', '.join(METHODS)})")


def make_rates(model: torch.nn.Module, inner: dict) -> LearnedRates:
    """The learned rates of the tensors reckoning.inner.adapt selects, initialised at inner.lr."""
    return LearnedRates(adapted_names(model, inner["adapt"]), inner["steps"], inner["lr"], inner["learn_rates"])


def method_loss(model, rates: LearnedRates, batches: dict, method: str, inner: dict) -> torch.Tensor:
    """The outer loss of one context (batches: reckoning.batches.context_batches)."""
    if method not in ENCODED:
        return lm_loss(model, {}, prompts(batches, method))
    params = encode(model, rates, batches["facts"], inner["steps"], inner["first_order"], inner["optimizer"])
    loss = lm_loss(model, params, batches["ask"])
    if method == "reckoning_mt":
        loss = loss + lm_loss(model, params, batches["recite"])
    return loss


def prompts(batches: dict, method: str) -> dict:
    """The batch a method answers a context's questions from: the question alone (encoded methods,
    from theta'), or its in-context prompt."""
    return batches["ask" if method in ENCODED else method]


def accuracy(model, rates: LearnedRates, contexts: list[dict], method: str, inner: dict) -> float:
    """Share of questions answered exactly (greedy) after inner.steps steps, over the contexts' batches."""
    right = total = 0
    with torch.no_grad():
        for batches in contexts:
            params = (encode(model, rates, batches["facts"], inner["steps"], True, inner["optimizer"])
                      if method in ENCODED else {})
            b = prompts(batches, method)
            exact, _ = answer_scores(forward(model, params, b), b["labels"])
            right, total = right + int(exact.sum()), total + len(exact)
    return right / max(total, 1)


def outer_optimizer(model, rates: LearnedRates, outer: dict) -> torch.optim.Optimizer:
    """AdamW over theta (weight decay) and the learned rates (none)."""
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": outer["weight_decay"]}]
    learned = [r for r in rates.rates if r.requires_grad]
    if learned:
        groups.append({"params": learned, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=outer["lr"], betas=(0.9, 0.999), eps=1e-8)


def train_method(model, rates: LearnedRates, train: list[dict], validation: list[dict], method: str,
                 settings: dict, seed: int) -> dict:
    """Train in place; at the end model and rates hold the epoch best on validation accuracy
    (the first best on ties). Returns the history (loss, validation accuracy, seconds per epoch)."""
    check_method(method)
    inner, outer = settings["inner"], settings["outer"]
    torch.manual_seed(seed)
    order_rng, opt = np.random.default_rng(seed), outer_optimizer(model, rates, outer)
    params = [p for group in opt.param_groups for p in group["params"]]
    history, best = [], (-1.0, None)
    for epoch in range(1, outer["epochs"] + 1):
        start, losses = time.perf_counter(), []
        order = order_rng.permutation(len(train))
        for first in range(0, len(order), outer["batch_size"]):
            chunk = order[first:first + outer["batch_size"]]
            for i in chunk:
                loss = method_loss(model, rates, train[i], method, inner) / len(chunk)
                loss.backward()
                losses.append(loss.item() * len(chunk))
            torch.nn.utils.clip_grad_norm_(params, outer["max_grad_norm"])
            opt.step()
            opt.zero_grad(set_to_none=True)
        val = accuracy(model, rates, validation, method, inner)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "validation_exact": val,
                        "seconds": time.perf_counter() - start})
        log.info("%s epoch %d: loss %.4f, validation exact %.3f", method, epoch, history[-1]["loss"], val)
        if val > best[0]:
            best = (val, copy.deepcopy((model.state_dict(), rates.state_dict())))
    model.load_state_dict(best[1][0])
    rates.load_state_dict(best[1][1])
    return {"history": history, "best_epoch": 1 + int(np.argmax([h["validation_exact"] for h in history]))}


def save_method(model, rates: LearnedRates, record: dict, out: str | Path) -> None:
    """The trained method as a folder: model (safetensors), rates.safetensors, train.json."""
    from safetensors.torch import save_file

    from ... import io

    with io.atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        save_file({name: r.detach().contiguous() for name, r in zip(rates.names, rates.rates)},
                  str(tmp / "rates.safetensors"))
        io.write_json(record, tmp / "train.json")


def load_method(folder: str | Path, inner: dict, device: str = "cpu"):
    """(model, rates) of a saved method, the model with eager attention (what it trained with)."""
    from safetensors.torch import load_file

    from ...checkpoint import load_model
    from .inner import use_eager_attention

    model = use_eager_attention(load_model(folder, device, fused_gelu=False))
    saved = load_file(str(Path(folder) / "rates.safetensors"), device=str(model.device))
    rates = LearnedRates(list(saved), inner["steps"], 0.0, learn=False).to(model.device)
    with torch.no_grad():
        for rate, name in zip(rates.rates, rates.names):
            rate.copy_(saved[name])
    return model, rates
