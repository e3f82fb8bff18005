"""Circuit evaluation: faithfulness, Hit@k with out-of-circuit edges ablated, cross-group, transplant.

Faithfulness (the original study's definition, on the circuit pairs):
    (LD_circuit - LD_corrupted) / (LD_clean - LD_corrupted),  LD = mean logit difference over items,
where the circuit run takes the clean prompt and patches every edge *outside* the circuit with its
activation from the corrupted prompt. The full graph scores 1, the empty circuit 0.

Hit@k (on probe prompts, clean run only): the share of prompts whose answer's first token ranks in
the top k (0-based rank < k, evaluate.metrics.target_rank) when every edge outside the circuit is
ablated: "zero" removes the parent's contribution (the original study's get_circuit_token_prob_and_rank),
"mean" replaces it by the parent's mean output at that position over the evaluated prompts (real
tokens only). Attention output biases belong to no node and are always kept (model.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..batching import by_length, pad_right
from ..evaluate.metrics import target_rank
from ..tokenizer import bos_prefix, first_answer_token
from .attribute import PairBatch
from .graph import Circuit
from .metrics import logit_difference
from .model import CircuitModel

ABLATIONS = ("zero", "mean")


@dataclass
class ProbeBatch:
    ids: torch.Tensor    # [B, T] right-padded prompts
    last: torch.Tensor   # [B] index of each prompt's last token
    label: torch.Tensor  # [B] first token of the answer

    def __len__(self) -> int:
        return self.ids.shape[0]


def probe_batches(probes, tokenizer, batch_size: int, device="cpu", prepend_bos: bool = False) -> list[ProbeBatch]:
    """Rows with `prompt` and `answer` (probes.parquet, one attribute) -> batches on `device`, shortest
    first; prepend_bos: BOS first (kcircuits.tokenizer.bos_prefix)."""
    bos = bos_prefix(tokenizer, prepend_bos)
    rows = [(bos + tokenizer(p, add_special_tokens=False)["input_ids"], first_answer_token(tokenizer, p, a))
            for p, a in zip(probes["prompt"], probes["answer"])]
    out = []
    for chunk in by_length(rows, batch_size):
        ids, last = pad_right([r[0] for r in chunk], tokenizer.pad_token_id)
        out.append(ProbeBatch(ids.to(device), last.to(device), torch.tensor([r[1] for r in chunk], device=device)))
    return out


def _check(model: CircuitModel, circuit: Circuit | None) -> None:
    if circuit is not None and circuit.graph != model.graph:
        raise ValueError(f"circuit graph {circuit.graph} does not match the model's {model.graph}")


def faithfulness(model: CircuitModel, circuit: Circuit, batches: list[PairBatch]) -> dict:
    """Mean logit differences (clean, corrupted, circuit) and the faithfulness ratio."""
    return faithfulness_of(model, [circuit], batches)[0]


@torch.no_grad()
def faithfulness_of(model: CircuitModel, circuits: list[Circuit], batches: list[PairBatch]) -> list[dict]:
    """faithfulness of each circuit on the same pairs: each batch's clean and corrupted runs once,
    shared by every circuit (the numbers are those of one call per circuit)."""
    for circuit in circuits:
        _check(model, circuit)
    masks = [circuit.edges.to(model.device, torch.float32) for circuit in circuits]
    sums = {"clean": 0.0, "corrupted": 0.0}  # tensors on the model's device once added to
    circuit_sums = [0.0] * len(circuits)
    n = 0
    for b in batches:
        clean_logits = model.run(b.clean_ids, b.last)
        corrupted_logits, corrupted = model.run(b.corrupted_ids, b.last, record=True)
        for key, logits in (("clean", clean_logits), ("corrupted", corrupted_logits)):
            sums[key] += logit_difference(logits, b.clean_label, b.corrupted_label).double().sum()
        for c, mask in enumerate(masks):
            circuit_logits = model.run(b.clean_ids, b.last, mask=mask, reference=corrupted)
            circuit_sums[c] += logit_difference(circuit_logits, b.clean_label, b.corrupted_label).double().sum()
        n += len(b)
    out = []
    for total in circuit_sums:
        ld = {f"ld_{k}": float(v) / n for k, v in (*sums.items(), ("circuit", total))}
        gap = ld["ld_clean"] - ld["ld_corrupted"]
        ratio = (ld["ld_circuit"] - ld["ld_corrupted"]) / gap if gap != 0 else math.nan
        out.append({**ld, "faithfulness": ratio, "n_pairs": n})
    return out


@torch.no_grad()
def mean_reference(model: CircuitModel, batches: list[ProbeBatch]) -> torch.Tensor:
    """Each node's mean output per position over the prompts' real tokens, [n_fwd, 1, T_max, d]."""
    width = max(b.ids.shape[1] for b in batches)
    total = torch.zeros(model.graph.n_forward, width, model.d_model, dtype=torch.float64, device=model.device)
    count = torch.zeros(width, dtype=torch.float64, device=model.device)
    for b in batches:
        _, outs = model.run(b.ids, b.last, record=True)  # [n_fwd, B, T, d]
        real = (torch.arange(b.ids.shape[1], device=b.ids.device)[None, :] <= b.last[:, None]).to(outs.dtype)  # [B, T]
        total[:, : b.ids.shape[1]] += torch.einsum("nbtd,bt->ntd", outs, real).double()
        count[: b.ids.shape[1]] += real.sum(0).double()
    return (total / count.clamp(min=1)[None, :, None]).float()[:, None]


@torch.no_grad()
def hit_at_k(model: CircuitModel, circuit: Circuit | None, batches: list[ProbeBatch], k: int = 10,
             ablation: str = "zero", reference: torch.Tensor | None = None) -> dict:
    """Hit@k and mean 0-based rank of the answer's first token; circuit None = the full model.

    reference: a precomputed mean_reference of these prompts (saves a pass when many circuits are
    evaluated on the same prompts); computed here when ablation is "mean" and it is missing.
    """
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    _check(model, circuit)
    if circuit is not None and ablation == "mean" and reference is None:
        reference = mean_reference(model, batches)
    mask = None if circuit is None else circuit.edges.to(model.device, torch.float32)
    hits, rank_sum, n = 0, 0.0, 0  # hits and rank_sum: tensors on the model's device once added to
    for b in batches:
        ref = None if circuit is None or ablation == "zero" else reference[:, :, : b.ids.shape[1]]
        logits = model.run(b.ids, b.last, mask=mask, reference=ref)
        rank = target_rank(logits, b.label)
        hits += (rank < k).sum()
        rank_sum += rank.double().sum()
        n += len(b)
    return {f"hit_at_{k}": int(hits) / n if n else math.nan, "mean_rank": float(rank_sum) / n if n else math.nan,
            "n_prompts": n, "ablation": ablation if circuit is not None else "none"}


def cross_group_hits(model: CircuitModel, circuits: dict[str, Circuit], probes: dict[str, list[ProbeBatch]],
                     k: int = 10, ablation: str = "zero") -> list[dict]:
    """Every circuit on every probe set (e.g. a high-frequency circuit on low-frequency facts)."""
    rows = []
    for target, batches in probes.items():
        ref = mean_reference(model, batches) if ablation == "mean" else None
        full = hit_at_k(model, None, batches, k)
        for source, circuit in circuits.items():
            res = hit_at_k(model, circuit, batches, k, ablation, ref)
            rows.append({"source": source, "target": target, **res, f"full_model_hit_at_{k}": full[f"hit_at_{k}"]})
    return rows


def transplant(model: CircuitModel, circuits: dict[str, Circuit], batches: list[ProbeBatch], k: int = 10,
               ablation: str = "zero") -> list[dict]:
    """One row of the transplant matrix: circuits found at other checkpoints (keys), evaluated on
    this checkpoint's model. The graphs must match (same architecture); the weights need not."""
    ref = mean_reference(model, batches) if ablation == "mean" else None
    return [{"source": name, **hit_at_k(model, circuit, batches, k, ablation, ref)}
            for name, circuit in circuits.items()]
