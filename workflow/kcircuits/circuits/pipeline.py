"""The circuit pipeline on a set of pairs: EAP-IG scores of every circuit cell, its circuit at every
edge budget, and that circuit's Hit@k under every ablation on the cell's own prompts, with the main
study's machinery and settings. Used by the studies that find circuits of other models or subsets
(stream runs, RECKONING's theta', document memory). Also the pieces the circuit stages share: loading a
checkpoint as a CircuitModel, the cells of a pair table, the encoding, probe batches of every cell's
circuit prompt, mean references and circuit selection.
"""
from __future__ import annotations

import pandas as pd

from ..vocabulary import CELL, budget_label, budget_value, cell_key, parse_cell_key


def load_checkpoint(checkpoint: str, device: str = "cpu", hf_forward: bool = False):
    """(CircuitModel on `device` (auto | cpu | cuda), checkpoint metadata) of a checkpoint folder.

    hf_forward: the stage also calls the Hugging Face model itself (`model.hf(...)`, generation), so it
    is loaded through transformers; otherwise only the modules CircuitModel reads are built, without
    transformers (checkpoint.load_model, kcircuits.circuits.light), with the same results."""
    from ..checkpoint import checkpoint_metadata, load_model
    from .model import CircuitModel

    model = load_model(checkpoint, device, hf_forward=hf_forward)
    return CircuitModel(model), checkpoint_metadata(checkpoint)


def pair_cells(pairs: pd.DataFrame, max_pairs: int | None):
    for cell, part in pairs.groupby(CELL, sort=True):
        yield cell_key(*cell), part.head(max_pairs) if max_pairs else part


def encoding(model, c: dict) -> dict:
    """How prompts are encoded for `model`: on its device, with BOS when circuits.prepend_bos."""
    return {"device": model.device, "prepend_bos": c["prepend_bos"]}


def hit_prompts(probes: pd.DataFrame, tasks: dict[str, str], tokenizer, batch_size: int, on: dict,
                parts=None) -> dict:
    """(task, type, group) -> probe batches of the task's circuit prompt for each probe entity (on:
    encoding; parts: see batched)."""
    from .evaluate import probe_batches

    def make(rows):
        return probe_batches(rows[["prompt", "answer"]].reset_index(drop=True), tokenizer, batch_size, **on)

    out = {}
    for task, template in tasks.items():
        rows = probes[probes["attribute"] == task].drop_duplicates("entity_id")
        for (etype, group), part in rows.groupby(["type", "freq_group"], sort=True):
            prompts = part.assign(prompt=[template.format(name=n) for n in part["name"]])
            out[(task, etype, group)] = batched(prompts, make, parts)
    return out


class PartBatches:
    """The batches of a table made part by part, anew at each pass (see batched)."""

    def __init__(self, rows: pd.DataFrame, make, parts):
        self.rows, self.make, self.parts = rows, make, parts

    def __iter__(self):
        for part in self.parts(self.rows):
            yield from self.make(part)


def batched(rows: pd.DataFrame, make, parts=None):
    """make(rows) -> batches; or, given parts(rows) -> an iterator of row groups that may hold a
    context while each group's batches are used (e.g. a gated memory reading one document:
    document memory's per-document parts), a re-iterable of every group's batches."""
    return make(rows) if parts is None else PartBatches(rows, make, parts)


def mean_references(model, prompts: dict, ablations: list[str]) -> dict:
    """Per probe cell, the mean activations that mean ablation patches in (only if it is asked for)."""
    from .evaluate import mean_reference

    return {cell: mean_reference(model, batches) for cell, batches in prompts.items()} if "mean" in ablations else {}


def select_circuit(scores, graph, budget, how: str):
    from .graph import select_greedy, select_top_n

    return (select_greedy if how == "greedy" else select_top_n)(scores, graph, budget)


def circuit_tables(model, tok, pairs: pd.DataFrame, probes: pd.DataFrame, tasks: dict[str, str], c: dict,
                   max_pairs: int | None, parts=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(in-circuit edges, Hit@k rows) of every cell's circuit at every edge budget (c: circuits
    settings; parts: batches made per group of rows, kcircuits.circuits.stage.batched)."""
    from .attribute import attribute, pair_batches
    from .evaluate import hit_at_k
    from .store import circuits_frame

    k, on = c["hit_k"], encoding(model, c)
    prompts = hit_prompts(probes, tasks, tok, c["batch_size"], on, parts)
    means = mean_references(model, prompts, c["ablations"])
    frames, hits = [], []
    for key, part in pair_cells(pairs, max_pairs):
        cell = parse_cell_key(key)
        with model.precision(c["dtype"]):
            batches = batched(part, lambda rows: pair_batches(rows, tok, c["batch_size"], **on), parts)
            scores = attribute(model, batches, c["method"], c["ig_steps"], c["ig_points"])
        full = hit_at_k(model, None, prompts[cell], k)[f"hit_at_{k}"]
        for budget in map(budget_value, c["edge_budgets"]):
            circuit = select_circuit(scores, model.graph, budget, c["selection"])
            frames.append(circuits_frame({key: circuit}, {key: scores}).assign(budget=budget_label(budget)))
            for ablation in c["ablations"]:
                res = hit_at_k(model, circuit, prompts[cell], k, ablation, means.get(cell))
                hits.append({**dict(zip(CELL, cell)), "budget": budget_label(budget), "ablation": ablation,
                             "n_edges": circuit.n_edges, "hit_at_k": res[f"hit_at_{k}"],
                             "mean_rank": res["mean_rank"], "n_prompts": res["n_prompts"],
                             "full_model_hit_at_k": full})
    edges = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=[*CELL, "parent", "child", "score"]))
    return edges, pd.DataFrame(hits)


__all__ = ["load_checkpoint", "pair_cells", "encoding", "hit_prompts", "batched", "mean_references",
           "select_circuit", "circuit_tables"]
