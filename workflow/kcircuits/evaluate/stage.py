"""The evaluation stages: `kcircuits evaluate ...` (one checkpoint) and `kcircuits eval-summary ...`
(one training seed's checkpoints joined, in training order); rules/evaluate.smk."""
from __future__ import annotations

import logging

import pandas as pd

from .. import io
from ..settings import add_job_arguments, add_paths, command, run_handler, set_threads

log = logging.getLogger("kcircuits")


def _evaluate(args, s: dict) -> None:
    from ..checkpoint import checkpoint_metadata, load_model
    from ..tokenizer import load_tokenizer
    from .generation import generation_probe
    from .knowledge import evaluate_checkpoint, load_inputs

    set_threads(args.threads)
    inputs = load_inputs(args.entities, args.probes, args.paraphrase, args.bios_val, args.base_val, args.mc, args.tf)
    meta = checkpoint_metadata(args.checkpoint)
    model = load_model(args.checkpoint, args.device)
    tok = load_tokenizer(args.tokenizer)
    cells, entity_table = evaluate_checkpoint(model, tok, inputs, s)
    generations = generation_probe(model, tok, inputs.probes, s)
    prov = {**io.provenance("evaluate", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    io.write_parquet(io.with_leading_columns(cells, meta), args.out, prov)
    io.write_parquet(io.with_leading_columns(entity_table, meta), args.out_entities, prov)
    io.write_parquet(io.with_leading_columns(generations, meta), args.out_generations, prov)
    log.info("%s: %d cells", meta["checkpoint"], len(cells))


def _eval_summary(args, s: dict) -> None:
    from .aggregate import summarise, summarise_entities
    from .generation import summarise_generations

    prov = io.provenance("eval_summary", s["seed"], s)
    io.write_parquet(summarise([pd.read_parquet(p) for p in args.evals]), args.out, prov)
    io.write_parquet(summarise_entities([pd.read_parquet(p) for p in args.entity_evals]), args.out_entities, prov)
    io.write_parquet(summarise_generations([pd.read_parquet(p) for p in args.generation_evals]), args.out_generations,
                     prov)


def add_parser(subparsers) -> None:
    p = command(subparsers, "evaluate", "knowledge metrics of one checkpoint", "evaluate", _evaluate)
    add_paths(p, "checkpoint", "tokenizer", "entities", "probes", "paraphrase", "bios_val", "base_val", "mc", "tf",
              "out", "out_entities", "out_generations")
    add_job_arguments(p)
    p.set_defaults(run=run)
    p = command(subparsers, "eval-summary", "join per-checkpoint evaluations", "evaluate", _eval_summary)
    add_paths(p, "evals", "entity_evals", "generation_evals", many=True)
    add_paths(p, "out", "out_entities", "out_generations")
    p.set_defaults(run=run)


def run(args) -> None:
    run_handler(args)


__all__ = ["add_parser", "run"]
