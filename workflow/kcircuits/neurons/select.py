"""Knowledge-neuron selection as the original (Dai et al. 2022, `2_get_kn.py`), on any per-prompt scores.

Neurons are flat indices over (layer, neuron): scores of one fact's bag are [P, N] (P prompts, N = L x m).
    coarse   per prompt, neurons scoring >= t x that prompt's maximum (t = 0.2 for attributions; the
             baseline method runs the same procedure on raw activations with t = 0.5); a prompt whose
             maximum is not positive has none
    refined  the fact's knowledge neurons: coarse in at least max(p x P, 3) of its prompts
    p        starts at 0.7 and moves per attribute by +-0.05, for up to 6 rounds, until the attribute's
             mean number of knowledge neurons per fact lies in [2, 5] (too few: lower p; too many: raise)
    relation-level neurons: knowledge neurons of at least 10% of the attribute's facts (the edit
             experiment leaves them out)
"""
from __future__ import annotations

from collections import Counter

import numpy as np

MIN_PROMPTS = 3


def coarse(scores: np.ndarray, t: float) -> np.ndarray:
    """scores [P, N] -> bool [P, N]: per prompt, score >= t * its maximum (none if the maximum <= 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    top = scores.max(axis=1, keepdims=True)  # [P, 1]
    return (scores >= t * top) & (top > 0)


def refine(coarse_mask: np.ndarray, p: float, min_prompts: int = MIN_PROMPTS) -> np.ndarray:
    """bool [P, N] -> sorted flat indices of neurons coarse in >= max(p * P, min_prompts) prompts."""
    counts = np.asarray(coarse_mask).sum(axis=0)  # [N]
    return np.flatnonzero(counts >= max(p * coarse_mask.shape[0], min_prompts))


def select_attribute(coarse_by_fact: dict, p: float = 0.7, step: float = 0.05, rounds: int = 6,
                     band: tuple[float, float] = (2.0, 5.0)) -> tuple[dict, float]:
    """Knowledge neurons of every fact of one attribute ({fact: bool [P, N]} -> {fact: indices}) with the
    attribute's p after adjustment (see the module docstring)."""
    lo, hi = band
    for round_ in range(rounds + 1):
        neurons = {fact: refine(mask, p) for fact, mask in coarse_by_fact.items()}
        mean = float(np.mean([len(n) for n in neurons.values()])) if neurons else 0.0
        if lo <= mean <= hi or round_ == rounds:
            return neurons, p
        p = round(p - step if mean < lo else p + step, 10)
    raise AssertionError("unreachable")


def relation_neurons(neurons_by_fact: dict, share: float = 0.1) -> np.ndarray:
    """Sorted flat indices of neurons that are knowledge neurons of >= share of the facts."""
    counts = Counter(int(i) for indices in neurons_by_fact.values() for i in indices)
    need = share * len(neurons_by_fact)
    return np.array(sorted(i for i, c in counts.items() if c >= need), dtype=np.int64)
