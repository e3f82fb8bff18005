"""What knowledge neurons do (Dai et al. 2022, §2 of the seed notes): suppress / amplify, edit, erase.

Everything runs on the in-memory model (CircuitModel over a loaded copy of the weights; no file is
read or written) and only on value-target prompts (bags.rows.target_kind == "value"). Neurons are flat
indices `index` = layer * d_mlp + neuron. P(target) is the softmax probability of the value's first
token at the prompt's last position; rank and top-1 follow evaluate.metrics.target_rank (rank 0 =
no token scores strictly higher = top-1); PPL over prompts = exp(mean over them of -log P(gold)).

Intervention (`interventions`, original `3_modify_activation.py`). For each fact with >= 1 knowledge
    neuron, the listed MLP hidden activations at the last position are multiplied by 0 (suppress) or
    2 (amplify), every touched layer at once in one forward (CircuitModel.run's replace_mlp_hidden,
    a per-row mask [B, m] per layer). neurons: knowledge (the fact's own) | random (the same number of
    neurons in each of the same layers, drawn from the rng among the layer's other neurons: a control
    for "any neurons of those layers"). prompts: own (the fact's bag) | unrelated (the bag of one
    fact of another attribute, drawn from the rng once per fact, shared by every row of the fact).
    p_before / p_after are means of P(target) over those prompts, change = (p_after - p_before) /
    p_before of those means (the original's mean delta / mean P_before). All facts' rows of one
    operation run through one batched pass: no forward per fact.

Edit (`edits`, original `6_edit_knowledge_sampled.py`). A neuron's value slot v [d] is what it writes
    per unit of activation: its row of the MLP output projection in the [m, d] orientation (GPT-2
    Conv1D c_proj.weight [m, d]: row; GPT-NeoX dense_4h_to_h / Llama down_proj, nn.Linear [d, m]:
    column). Facts: those whose neurons minus the attribute's relation-level neurons are not empty,
    whose unedited top-1 on one random prompt of their bag is the gold token (so old token = gold),
    with a candidate new value; up to facts_per_attribute of them per attribute (rng). New value: a
    random other value of the same attribute whose first token differs from the old token. Each of
    those neurons' slots becomes
        v - lambda1 * |v| / |e_old| * e_old + lambda2 * |v| / |e_new| * e_new
    with e the output embedding row (model.unembed.weight) of the old / new token; the prompt is
    scored before and after, with PPL over all prompts of ppl_facts other facts of the same
    attribute (intra) and of ppl_facts facts of other attributes (inter); then the edit is reverted
    (bit-identical weights, also after an exception: edited_value_slots).

Erase (`erase`, original `7_erase_knowledge.py`). Per attribute, its n most frequent knowledge neurons
    across its facts (ties: lower index first) have their value slots set to zero; top-1 accuracy and
    PPL of the gold token over the attribute's prompts (scope erased) and over every other
    attribute's prompts (scope other), before and after; then the slots are restored.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from ..evaluate.metrics import target_logprob, target_rank
from .facts import FACT_COLUMNS, Bags

OPERATIONS = {"suppress": 0.0, "amplify": 2.0}  # operation -> factor on the knowledge neurons' activations


# ---- value slots -----------------------------------------------------------------------------------------
def value_matrix(model, layer: int) -> torch.Tensor:
    """Layer's MLP output projection as [m, d], a view of the weight (writing it writes the model):
    row i is neuron i's value slot. Conv1D (GPT-2) stores [m, d]; nn.Linear stores [d, m]."""
    proj = model.layers[layer].mlp_out
    return proj.weight.t() if isinstance(proj, torch.nn.Linear) else proj.weight


def d_mlp(model) -> int:
    """MLP hidden neurons per layer."""
    return value_matrix(model, 0).shape[0]


def value_slots(model, index) -> torch.Tensor:
    """Copies of the value slots of neurons index [k] (flat): [k, d]."""
    m, rows = d_mlp(model), [int(i) for i in np.asarray(index, dtype=np.int64)]
    if not rows:
        values = value_matrix(model, 0)
        return values.new_empty(0, values.shape[1])
    return torch.stack([value_matrix(model, i // m)[i % m].detach().clone() for i in rows])


@torch.no_grad()
def _write_slots(model, index: np.ndarray, values: torch.Tensor) -> None:
    m = d_mlp(model)
    for i, v in zip(index.tolist(), values):
        value_matrix(model, i // m)[i % m].copy_(v)  # a view of the weight: written in place


@contextmanager
def edited_value_slots(model, index, values: torch.Tensor):
    """Within the block, the value slots of neurons index [k] (distinct) are values [k, d]; afterwards,
    also after an exception, every slot holds its original value again, bit for bit."""
    index = np.asarray(index, dtype=np.int64)
    if len(np.unique(index)) != len(index):
        raise ValueError("edited_value_slots: repeated neurons")
    if tuple(values.shape) != (len(index), value_matrix(model, 0).shape[1]):
        raise ValueError(f"edited_value_slots: values {tuple(values.shape)} for {len(index)} neurons")
    saved = value_slots(model, index)  # [k, d]
    try:
        _write_slots(model, index, values)
        yield
    finally:
        _write_slots(model, index, saved)


def edit_rule(slots: torch.Tensor, e_old: torch.Tensor, e_new: torch.Tensor, lambda1: float,
              lambda2: float) -> torch.Tensor:
    """Dai et al.'s update of value slots [k, d] (old / new token embeddings e [d]) -> [k, d]."""
    norm = slots.norm(dim=1, keepdim=True)  # [k, 1]
    return slots - lambda1 * norm * e_old / e_old.norm() + lambda2 * norm * e_new / e_new.norm()


# ---- scoring -----------------------------------------------------------------------------------------------
@torch.no_grad()
def target_scores(model, ids: torch.Tensor, last: torch.Tensor, targets: torch.Tensor, batch_size: int,
            edits: Callable[[slice], dict] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """log P(target) [Q] (float64) and target rank [Q] (int64) for prompts ids [Q, T]; edits(rows)
    gives a batch's replace_mlp_hidden (None: the model as it is)."""
    logprob, rank = [], []  # per batch, on the model's device; to the CPU once, at the end
    for start in range(0, len(ids), batch_size):
        part = slice(start, start + batch_size)
        logits = model.run(ids[part], last[part], replace_mlp_hidden=edits(part) if edits else None)  # [B, V]
        logprob.append(target_logprob(logits, targets[part]).double())
        rank.append(target_rank(logits, targets[part]))
    if not logprob:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return torch.cat(logprob).cpu().numpy(), torch.cat(rank).cpu().numpy()


def scale_edits(neurons_per_row: list, n_layers: int, m: int, factor: float, device="cpu") -> dict:
    """replace_mlp_hidden edits for a batch: row b's neurons neurons_per_row[b] (flat indices)
    multiplied by factor, one edit per touched layer (a mask [B, m] on `device`, the model's)."""
    counts = [len(n) for n in neurons_per_row]
    if not sum(counts):
        return {}
    flat = np.concatenate([np.asarray(n, dtype=np.int64) for n in neurons_per_row])  # [n]
    row = np.repeat(np.arange(len(neurons_per_row)), counts)  # [n]
    layer, unit = flat // m, flat % m
    scale = torch.ones(n_layers, len(neurons_per_row), m, device=device)  # [L, B, m]
    scale[tuple(torch.as_tensor(i, device=device) for i in (layer, row, unit))] = factor
    return {int(lay): (lambda h, s=scale[lay]: h * s) for lay in np.unique(layer)}


def scaled_neurons_prob(model, ids: torch.Tensor, last: torch.Tensor, targets: torch.Tensor,
                        neurons_per_row: list | None = None, factor: float = 1.0,
                        batch_size: int = 256) -> np.ndarray:
    """P(target) [Q] for prompts ids [Q, T] (right-padded, last [Q], targets [Q]) with row q's neurons
    neurons_per_row[q] (flat indices, any layers) multiplied by factor at the last position
    (0: suppress, 2: amplify); neurons_per_row None or factor 1: the unmodified model."""
    if neurons_per_row is not None and len(neurons_per_row) != len(ids):
        raise ValueError(f"{len(neurons_per_row)} neuron lists for {len(ids)} prompts")
    L, m = model.n_layers, d_mlp(model)

    def batch_edits(part: slice) -> dict:
        return scale_edits(neurons_per_row[part], L, m, factor, ids.device)

    modified = neurons_per_row is not None and factor != 1.0
    return np.exp(target_scores(model, ids, last, targets, batch_size, batch_edits if modified else None)[0])


def unedited_scores(model, bags: Bags, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """log P(target) [Qv] and target rank [Qv] of the value prompts (_value_bags) on the unmodified
    model: what interventions, edits and erase compare against. Computed once, it is passed to each
    (`unedited`) instead of each running the same forward again."""
    v = _value_bags(bags)[0]
    return target_scores(model, v.ids, v.last, v.targets, batch_size)


def _ppl(logprob: np.ndarray) -> float:
    return float(np.exp(-np.mean(logprob))) if len(logprob) else float("nan")


def _value_bags(bags: Bags) -> tuple[Bags, dict, pd.DataFrame]:
    """The value-target prompts, each fact's prompt positions among them, and its FACT_COLUMNS."""
    v = bags.select(bags.rows["target_kind"].to_numpy() == "value")
    prompts = {int(f): np.asarray(p) for f, p in v.rows.groupby("fact", sort=True).indices.items()}
    facts = v.rows.drop_duplicates("fact").set_index("fact", drop=False)[FACT_COLUMNS].sort_index()
    return v, prompts, facts


def _neurons(neurons: dict, fact: int) -> np.ndarray:
    return np.unique(np.asarray(neurons.get(fact, ()), dtype=np.int64))


# ---- suppress / amplify --------------------------------------------------------------------------------------
def matched_random(index, m: int, rng: np.random.Generator) -> np.ndarray:
    """Random neurons, as many in each layer as index [k] has there, among that layer's neurons not in
    index (all of the layer's where too few remain): sorted flat indices [k]."""
    index = np.unique(np.asarray(index, dtype=np.int64))
    layers, counts = np.unique(index // m, return_counts=True)
    out = [np.zeros(0, dtype=np.int64)]
    for layer, count in zip(layers, counts):
        pool = np.setdiff1d(np.arange(m), index[index // m == layer] % m)
        pool = pool if len(pool) >= count else np.arange(m)
        out.append(layer * m + rng.choice(pool, size=count, replace=False))
    return np.sort(np.concatenate(out))


INTERVENTION_COLUMNS = ["neurons", "operation", "prompts", "n_neurons", "n_prompts", "p_before", "p_after", "change"]


def interventions(model, bags: Bags, neurons: dict, rng: np.random.Generator, batch_size: int = 256,
                  unedited: tuple | None = None) -> pd.DataFrame:
    """Suppress / amplify one method's knowledge neurons ({fact: flat indices}) and matched random ones,
    on the fact's own prompts and an unrelated fact's: a row per (fact, neurons, prompts, operation)
    with FACT_COLUMNS + INTERVENTION_COLUMNS (the caller adds the method). unedited: unedited_scores
    of these bags (None: run here)."""
    v, prompts, facts = _value_bags(bags)
    m = d_mlp(model)
    groups = []  # (fact, neurons kind, prompts kind, prompt positions [P], neuron indices [k])
    for fact in facts.index:
        known = _neurons(neurons, fact)
        if not len(known):
            continue
        others = facts.index[facts["attribute"] != facts.at[fact, "attribute"]]
        sets = {"own": prompts[fact]}
        if len(others):
            sets["unrelated"] = prompts[int(others[rng.integers(len(others))])]
        for kind, idx in (("knowledge", known), ("random", matched_random(known, m, rng))):
            groups += [(fact, kind, label, pos, idx) for label, pos in sets.items()]
    if not groups:
        return pd.DataFrame(columns=FACT_COLUMNS + INTERVENTION_COLUMNS)
    pos = torch.as_tensor(np.concatenate([g[3] for g in groups]), device=v.ids.device)  # [R]: every group's prompts
    per_row = [g[4] for g in groups for _ in g[3]]
    ends = np.cumsum([len(g[3]) for g in groups])[:-1]
    unedited = unedited_scores(model, bags, batch_size) if unedited is None else unedited
    clean = np.exp(unedited[0])  # [Q]: P(target), the unmodified model
    after = {op: np.split(scaled_neurons_prob(model, v.ids[pos], v.last[pos], v.targets[pos], per_row, factor,
                                              batch_size), ends) for op, factor in OPERATIONS.items()}
    heads = {fact: facts.loc[fact].to_dict() for fact in dict.fromkeys(g[0] for g in groups)}  # once per fact
    records = []
    for g, (fact, kind, label, where, idx) in enumerate(groups):
        before = float(clean[where].mean())
        for op in OPERATIONS:
            p_after = float(after[op][g].mean())
            records.append({**heads[fact], "neurons": kind, "operation": op, "prompts": label,
                            "n_neurons": len(idx), "n_prompts": len(where), "p_before": before,
                            "p_after": p_after, "change": (p_after - before) / before if before else float("nan")})
    return pd.DataFrame.from_records(records, columns=FACT_COLUMNS + INTERVENTION_COLUMNS)


# ---- edit ----------------------------------------------------------------------------------------------------
EDIT_COLUMNS = ["template", "old_token", "new_value", "new_token", "n_neurons", "success_at_1", "success_at_5",
                "changed", "prob_before", "prob_after", "rank_before", "rank_after", "ppl_intra_before",
                "ppl_intra_after", "ppl_inter_before", "ppl_inter_after"]


def _edit_plan(value: tuple, neurons: dict, relation: dict, candidates: pd.DataFrame, rank: np.ndarray,
               facts_per_attribute: int, ppl_facts: int, rng: np.random.Generator) -> list[dict]:
    """Which facts to edit (see the module docstring), each with its prompt position, neurons, new
    value and token, and the prompts that measure PPL; value: _value_bags; rank [Q]: the unedited
    rank of each prompt's gold token."""
    v, prompts, facts = value
    of_attribute = dict(tuple(candidates.groupby("attribute", sort=False)))  # once, not per fact; rows in order
    eligible = {}  # attribute -> [(fact, prompt position, neurons, candidate values)]
    for fact in facts.index:
        attr = facts.at[fact, "attribute"]
        idx = np.setdiff1d(_neurons(neurons, fact), np.asarray(relation.get(attr, ()), dtype=np.int64))
        pos = int(rng.choice(prompts[fact]))
        same = of_attribute.get(attr, candidates.iloc[:0])
        new = same[(same["token"] != int(v.targets[pos])) & (same["value"] != v.rows.at[pos, "answer"])]
        if len(idx) and rank[pos] == 0 and len(new):
            eligible.setdefault(attr, []).append((fact, pos, idx, new))
    plan = []
    for attr, items in eligible.items():
        take = np.sort(rng.choice(len(items), size=min(facts_per_attribute, len(items)), replace=False))
        same = facts.index[facts["attribute"] == attr]
        other = facts.index[facts["attribute"] != attr]
        for fact, pos, idx, new in (items[i] for i in take):
            pick = new.iloc[int(rng.integers(len(new)))]
            intra = rng.choice(same[same != fact], size=min(ppl_facts, len(same) - 1), replace=False)
            inter = rng.choice(other, size=min(ppl_facts, len(other)), replace=False)
            plan.append({"fact": fact, "pos": pos, "neurons": idx, "new_value": pick["value"],
                         "new_token": int(pick["token"]),
                         "intra": np.concatenate([prompts[int(f)] for f in intra] + [np.zeros(0, dtype=int)]),
                         "inter": np.concatenate([prompts[int(f)] for f in inter] + [np.zeros(0, dtype=int)])})
    return plan


def edits(model, bags: Bags, neurons: dict, relation: dict, candidates: pd.DataFrame, lambda1: float = 1.0,
          lambda2: float = 8.0, facts_per_attribute: int = 10, ppl_facts: int = 5,
          rng: np.random.Generator | None = None, batch_size: int = 256, unedited: tuple | None = None) -> pd.DataFrame:
    """Edit facts to a new value through their knowledge neurons ({fact: flat indices}, minus
    relation[attribute], the relation-level neurons), one at a time, each reverted after it is scored.
    candidates: the values an attribute's facts can be edited to, columns attribute, value, token (the
    value's first token id as these prompts encode it). unedited: unedited_scores of these bags (None:
    run here). A row per edited fact: FACT_COLUMNS, EDIT_COLUMNS."""
    rng = np.random.default_rng() if rng is None else rng
    v, prompts, facts = _value_bags(bags)
    gold_lp, gold_rank = unedited_scores(model, bags, batch_size) if unedited is None else unedited  # [Q]
    plan = _edit_plan((v, prompts, facts), neurons, relation, candidates, gold_rank, facts_per_attribute,
                      ppl_facts, rng)
    if not plan:
        return pd.DataFrame(columns=FACT_COLUMNS + EDIT_COLUMNS)
    at = torch.as_tensor([p["pos"] for p in plan], device=v.ids.device)
    new_tokens = torch.as_tensor([p["new_token"] for p in plan], device=v.ids.device)
    new_lp, new_rank = target_scores(model, v.ids[at], v.last[at], new_tokens, batch_size)  # [E]: new token, unedited
    embed = model.unembed.weight.detach()  # [V, d]
    records = []
    for e, p in enumerate(plan):
        old = int(v.targets[p["pos"]])
        slots = value_slots(model, p["neurons"]).to(embed)  # [k, d]
        rows = torch.as_tensor(np.concatenate([[p["pos"], p["pos"]], p["intra"], p["inter"]]).astype(np.int64),
                               device=v.ids.device)
        targets = v.targets[rows].clone()
        targets[0] = p["new_token"]  # row 0: the new token; row 1: the old one; then the PPL prompts' gold
        with edited_value_slots(model, p["neurons"], edit_rule(slots, embed[old], embed[p["new_token"]],
                                                                  lambda1, lambda2)):
            lp, rank = target_scores(model, v.ids[rows], v.last[rows], targets, batch_size)
        n_intra = len(p["intra"])
        records.append({
            **facts.loc[p["fact"]].to_dict(), "template": v.rows.at[p["pos"], "template"], "old_token": old,
            "new_value": p["new_value"], "new_token": p["new_token"], "n_neurons": len(p["neurons"]),
            "success_at_1": bool(rank[0] == 0), "success_at_5": bool(rank[0] < 5), "changed": bool(rank[1] > 0),
            "prob_before": float(np.exp(new_lp[e])), "prob_after": float(np.exp(lp[0])),
            "rank_before": int(new_rank[e]), "rank_after": int(rank[0]),
            "ppl_intra_before": _ppl(gold_lp[p["intra"]]), "ppl_intra_after": _ppl(lp[2:2 + n_intra]),
            "ppl_inter_before": _ppl(gold_lp[p["inter"]]), "ppl_inter_after": _ppl(lp[2 + n_intra:])})
    return pd.DataFrame.from_records(records, columns=FACT_COLUMNS + EDIT_COLUMNS)


# ---- erase ---------------------------------------------------------------------------------------------------
ERASE_COLUMNS = ["attribute", "scope", "n_neurons", "n_prompts", "accuracy_before", "accuracy_after", "ppl_before",
                 "ppl_after"]


def frequent_neurons(neurons_by_fact: dict, n: int) -> np.ndarray:
    """The n neurons that are knowledge neurons of the most facts (ties: lower index first), sorted."""
    counts = Counter(int(i) for idx in neurons_by_fact.values() for i in np.unique(np.asarray(idx, dtype=np.int64)))
    top = sorted(counts, key=lambda i: (-counts[i], i))[:n]
    return np.array(sorted(top), dtype=np.int64)


def erase(model, bags: Bags, neurons: dict, n_neurons: int = 20, batch_size: int = 256,
          unedited: tuple | None = None) -> pd.DataFrame:
    """Erase each attribute in turn: zero the value slots of its n_neurons most frequent knowledge
    neurons ({fact: flat indices}, one method) and score every value prompt. A row per (attribute,
    scope: erased | other): attribute, scope, n_neurons, n_prompts, accuracy_before, accuracy_after
    (top-1: rank 0), ppl_before, ppl_after. unedited: unedited_scores of these bags (None: run here)."""
    v, _, facts = _value_bags(bags)
    before = unedited_scores(model, bags, batch_size) if unedited is None else unedited  # ([Q], [Q])
    attribute = v.rows["attribute"].to_numpy()
    records = []
    for attr in pd.unique(facts["attribute"]):
        idx = frequent_neurons({f: neurons.get(f, ()) for f in facts.index[facts["attribute"] == attr]}, n_neurons)
        after = before
        if len(idx):
            with edited_value_slots(model, idx, torch.zeros_like(value_slots(model, idx))):
                after = target_scores(model, v.ids, v.last, v.targets, batch_size)
        for scope, where in (("erased", attribute == attr), ("other", attribute != attr)):
            records.append({"attribute": attr, "scope": scope, "n_neurons": len(idx), "n_prompts": int(where.sum()),
                            "accuracy_before": _accuracy(before[1][where]),
                            "accuracy_after": _accuracy(after[1][where]),
                            "ppl_before": _ppl(before[0][where]), "ppl_after": _ppl(after[0][where])})
    return pd.DataFrame.from_records(records, columns=ERASE_COLUMNS)


def _accuracy(rank: np.ndarray) -> float:
    return float(np.mean(rank == 0)) if len(rank) else float("nan")
