"""Attribution in bfloat16 / float16 (circuits.dtype, neurons.dtype) against float32, on a trained
checkpoint of a finished run: how far the scores move and whether the circuits and neurons selected
from them change.

For every circuit cell (task x type x frequency group, the pairs circuit_scores reads) and every
knowledge-neuron prompt (the bags neurons_measure reads), scores are computed exactly as the stages do
(same settings, prompts and BOS), once per dtype:

  circuits  Pearson r and relative L2 error of the edge scores; Jaccard overlap of the circuits
            selected at each of circuits.edge_budgets (top-n, pruned: what circuit_eval selects)
  neurons   relative L2 error of the IG scores; mean Jaccard overlap, over prompts, of the coarse
            neurons (score >= neurons.threshold x the prompt's maximum)

and the wall time of each dtype (CPU autocast runs bfloat16 / float16 in software on machines without
those instructions: slower, not faster; the point of them is a GPU).

    python benchmarks/precision.py results/default                # seed 0, its last checkpoint
    python benchmarks/precision.py results/default --checkpoint epoch-003 --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from shapes import timed  # noqa: E402

from kcircuits.checkpoint import load_model  # noqa: E402
from kcircuits.circuits.attribute import attribute, pair_batches  # noqa: E402
from kcircuits.circuits.graph import select_top_n  # noqa: E402
from kcircuits.circuits.model import CircuitModel  # noqa: E402
from kcircuits.config import load_config  # noqa: E402
from kcircuits.neurons.attribute import attribute as neuron_attribute  # noqa: E402
from kcircuits.neurons.facts import encode, prompt_rows  # noqa: E402
from kcircuits.neurons.select import coarse  # noqa: E402
from kcircuits.tokenizer import load_tokenizer  # noqa: E402
from kcircuits.vocabulary import CELL, budget_value  # noqa: E402

DTYPES = ("float32", "bfloat16", "float16")


def jaccard(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def relative_l2(exact: torch.Tensor, low: torch.Tensor) -> float:
    return float((exact.double() - low.double()).norm() / exact.double().norm())


def in_precision(model: CircuitModel, dtype: str, fn):
    """(fn() under model.precision(dtype), its seconds on the model's device)."""
    def run():
        with model.precision(dtype):
            return fn()

    seconds, out = timed(run, model.device.type)
    return out, seconds


def circuit_rows(model, tok, pairs: pd.DataFrame, c: dict) -> list[dict]:
    """Per dtype: score agreement with float32 over every cell, circuit overlap per edge budget."""
    cells = [part.head(c["max_pairs"]) if c["max_pairs"] else part for _, part in pairs.groupby(CELL, sort=True)]
    batches = [pair_batches(part, tok, c["batch_size"], model.device, c["prepend_bos"]) for part in cells]
    valid, scores, seconds = model.graph.valid, {}, {}
    for dtype in DTYPES:
        scores[dtype], seconds[dtype] = in_precision(model, dtype, lambda: [
            attribute(model, b, c["method"], c["ig_steps"], c["ig_points"]) for b in batches])
    rows = []
    for dtype in DTYPES[1:]:
        exact, low = (torch.cat([s[valid] for s in scores[d]]) for d in ("float32", dtype))
        overlap = {str(budget): float(np.mean([jaccard(select_top_n(e, model.graph, budget_value(budget)).edges,
                                                        select_top_n(x, model.graph, budget_value(budget)).edges)
                                                for e, x in zip(scores["float32"], scores[dtype])]))
                   for budget in c["edge_budgets"]}
        rows.append({"what": "circuits", "dtype": dtype, "cells": len(cells), "pairs": int(sum(map(len, cells))),
                     "pearson": float(np.corrcoef(exact.double().numpy(), low.double().numpy())[0, 1]),
                     "relative_l2": relative_l2(exact, low), "circuit_jaccard": overlap,
                     "seconds": round(seconds[dtype], 2), "seconds_float32": round(seconds["float32"], 2)})
    return rows


def neuron_rows(model, tok, bags: pd.DataFrame, n: dict, prepend_bos: bool) -> list[dict]:
    """Per dtype: IG agreement with float32 over every prompt, coarse-neuron overlap per prompt."""
    b = encode(tok, prompt_rows(bags), model.device, prepend_bos)
    scores, seconds = {}, {}
    for dtype in DTYPES:
        scores[dtype], seconds[dtype] = in_precision(model, dtype, lambda: neuron_attribute(
            model, b.ids, b.last, b.targets, n["ig_steps"], n["ig_points"], n["batch_size"]))
    flat = {d: s.permute(1, 0, 2).reshape(len(b), -1).cpu() for d, s in scores.items()}  # [Q, L*m]
    exact_sets = coarse(flat["float32"].numpy(), n["threshold"])
    rows = []
    for dtype in DTYPES[1:]:
        low_sets = coarse(flat[dtype].numpy(), n["threshold"])
        rows.append({"what": "neurons", "dtype": dtype, "prompts": len(b),
                     "relative_l2": relative_l2(flat["float32"], flat[dtype]),
                     "coarse_jaccard": float(np.mean([jaccard(e, x) for e, x in zip(exact_sets, low_sets)])),
                     "seconds": round(seconds[dtype], 2), "seconds_float32": round(seconds["float32"], 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a finished run's results/{run} folder")
    parser.add_argument("--config", nargs="+", default=[str(REPO / "config.yaml")],
                        help="the run's config files (settings of the stages), merged left to right")
    parser.add_argument("--seed", type=int, default=0, help="training replicate")
    parser.add_argument("--checkpoint", help="checkpoint name (default: the last epoch)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg, root = load_config(args.config), Path(args.results)
    folder = root / f"seed-{args.seed}" / "checkpoints"
    name = args.checkpoint or max(p.name for p in folder.glob("epoch-*"))
    model = CircuitModel(load_model(folder / name, args.device))
    tok = load_tokenizer(root / "data" / "tokenizer")
    print(json.dumps({"checkpoint": name, "device": str(model.device), "threads": args.threads}), flush=True)
    for row in circuit_rows(model, tok, pd.read_parquet(root / "data" / "circuit_pairs.parquet"), cfg["circuits"]):
        print(json.dumps(row), flush=True)
    for row in neuron_rows(model, tok, pd.read_parquet(root / "data" / "neuron_bags.parquet"), cfg["neurons"],
                           cfg["circuits"]["prepend_bos"]):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
