"""Measure every checkpoint of a stream run: what the model knows, and the circuits that hold it.

A run's checkpoints are its start model (step 0) and the step-SSSSSS folders its training job wrote.
At each, with the main study's own machinery and settings:
- accuracy: top-1 and Hit@k of the first answer token on every probed fact's query prompts
  (kcircuits.evaluate.knowledge.query_items, without generation), averaged per fact;
- circuits: EAP-IG scores of every circuit cell (task x type x frequency group, at most max_pairs
  pairs each), the circuit at every edge budget, and its Hit@k under every ablation on its own
  cell's prompts (with the full model's Hit@k beside it).
One job measures a whole run: the models are small next to the cost of starting a job per checkpoint.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ...circuits.pipeline import circuit_tables
from ...evaluate.facts import fact_accuracy
from ...vocabulary import parse_checkpoint

log = logging.getLogger("kcircuits.interplay")


def run_checkpoints(start: str | Path, folder: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of a run's checkpoints in training order: the start model as step 0, then
    every step-SSSSSS in `folder`."""
    steps = sorted((parse_checkpoint(p.name)[1], p) for p in Path(folder).iterdir() if p.name.startswith("step-"))
    if not steps:
        raise ValueError(f"{folder}: no step-SSSSSS checkpoints")
    return [(0, Path(start)), *steps]


def measure_run(checkpoints: list[tuple[int, Path]], tok, probes: pd.DataFrame, pairs: pd.DataFrame,
                tasks: dict[str, str], s: dict, max_pairs: int | None, device: str = "cpu") -> dict[str, pd.DataFrame]:
    """accuracy, circuits and hits of every checkpoint (s: the study's stage settings), each row led
    by seed, step and checkpoint."""
    from ...circuits.pipeline import load_checkpoint

    ev = s["evaluate"]
    out = {"accuracy": [], "circuits": [], "hits": []}
    for step, path in checkpoints:
        model, meta = load_checkpoint(str(path), device, hf_forward=True)
        lead = {"seed": meta["seed"], "step": step, "checkpoint": meta["checkpoint"]}
        tables = {"accuracy": fact_accuracy(model.hf, tok, probes, ev["hit_k"], ev["batch_size"])}
        tables["circuits"], tables["hits"] = circuit_tables(model, tok, pairs, probes, tasks, s["circuits"], max_pairs)
        for name, table in tables.items():
            out[name].append(table.assign(**lead)[[*lead, *table.columns]])
        log.info("step %d (%s): top-1 %.3f over %d facts", step, meta["checkpoint"],
                 tables["accuracy"]["top1"].mean(), len(tables["accuracy"]))
    return {name: pd.concat(frames, ignore_index=True) for name, frames in out.items()}
