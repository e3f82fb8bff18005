"""The document-memory stage: `kcircuits memory ACTION ...`, one action per rule (rules.smk).

    documents  the documents (probed entities' training paragraphs, grouped) and their shingle
               clusters, for every number of documents
    allocations  every allocation of slots for one model of memory.models (its MLP width)
    train      one run from a main-study checkpoint: alpha = 0 plain, else with the inductive loss
               at the hook layer (the point: the settings' `run`, or --point by hand); with
               memory.module gated, a gated memory at the hook layer trains alone
    measure    one point of the sweep: recall, continuation, slot share, knowledge-neuron locality,
               circuits and the generation probe (memory.measure)
    summary    the sweep's tables across points and seeds, and the finding

By hand, e.g.:

    kcircuits memory train --config config.yaml --point '{"documents": 50, "model": "main", "layer": 1,
        "alpha": 0.2, "allocation": "partitioned"}' --start CKPT --documents D.parquet --allocations A.parquet \
        --tokenizer TOK --scratch /tmp/scratch --out /tmp/memory-model
"""
from __future__ import annotations

import json
import logging

import pandas as pd

from ... import io
from ...config import ConfigError
from ...settings import actions, add_job_arguments, add_paths, command, run_handler, set_threads
from ...stats import stage_rng

log = logging.getLogger("kcircuits")
POINT = ["documents", "model", "layer", "alpha", "allocation"]  # what identifies a point of the sweep
LEAD = {**{k: k for k in POINT}, "layer": "hook_layer"}  # its columns in the tables (circuits have layers)


def _documents(args, s: dict) -> None:
    from .allocate import cluster_all
    from .documents import choose_documents

    mem, seed = s["memory"], s["seed"]
    n_max = max(mem["documents"])
    try:  # too few eligible entities: one line naming the key
        docs = choose_documents(io.read_jsonl(args.bios), pd.read_parquet(args.entities),
                                pd.read_parquet(args.probes), n_max, mem["entities_per_document"],
                                mem["entity_types"], stage_rng(seed, "memory_documents"))
        clusters, report = cluster_all(docs, mem)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    prov = io.provenance("memory_documents", seed, s)
    io.write_parquet(docs, args.out_documents, prov)
    io.write_parquet(clusters, args.out_clusters, prov)
    io.write_json({"documents": n_max, "paragraphs": int(len(docs)), "clusters": report, "provenance": prov},
                  args.report)
    log.info("memory: %d documents (%d paragraphs)", n_max, len(docs))


def _allocations(args, s: dict) -> None:
    from ...train.model import mlp_width
    from .allocate import allocate_all, default_slots

    mem, seed = s["memory"], s["seed"]
    m = mlp_width(s["model"])
    slots = mem["slots"] or default_slots(m, max(mem["documents"]))
    try:  # slots that do not fit: one line naming the key
        allocations, report = allocate_all(pd.read_parquet(args.documents), mem, m, slots, seed,
                                           pd.read_parquet(args.clusters))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    prov = io.provenance("memory_allocations", seed, s)
    io.write_parquet(allocations, args.out_allocations, prov)
    io.write_json({"slots": m, "slots_per_document": slots, "allocations": report, "provenance": prov}, args.report)
    log.info("memory allocations: %d of %d slots per document", slots, m)


def _run(args, s: dict) -> dict:
    """The point (documents, layer, alpha, allocation): the settings' `run`, or --point JSON by hand."""
    run = json.loads(args.point) if args.point else s.get("run")
    if not run or set(run) != set(POINT):
        raise SystemExit(f"a memory run needs its point {POINT} (--point JSON or the settings' run), got {run}")
    return run


def _train(args, s: dict) -> None:
    from .train import train_run

    s = {**s, "run": _run(args, s)}
    execution = {"kind": "memory", "device": args.device}  # resolved by the trainer (compute.memory.device)
    train_run(s, execution, args.start, args.documents, args.allocations, args.tokenizer, args.scratch, args.out,
              args.threads)


def _measure(args, s: dict) -> None:
    from ...circuits.pipeline import load_checkpoint
    from ...tokenizer import load_tokenizer
    from .measure import measure_point
    from .module import load_memory

    run = _run(args, s)
    model, _ = load_checkpoint(args.model, args.device, hf_forward=True)
    memory = load_memory(args.model)
    docs = pd.read_parquet(args.documents)
    inputs = (model, load_tokenizer(args.tokenizer), docs[docs["doc"] < run["documents"]],
              pd.read_parquet(args.allocations), pd.read_parquet(args.probes), pd.read_parquet(args.pairs),
              {**s, "run": run})
    if memory is None:
        tables = measure_point(*inputs)
    else:  # the run's gated memory, in both views of the model
        memory.to(model.device).attach_circuit_model(model, memory.layer)
        with memory.attached(model.hf, memory.layer):
            tables = measure_point(*inputs, memory)
    lead = {"seed": s["seed"], **{LEAD[k]: run[k] for k in POINT}}
    prov = io.provenance("memory_measure", s["seed"], s, "torch", "transformers")
    for name, table in tables.items():
        io.write_parquet(io.with_leading_columns(table, lead), getattr(args, f"out_{name}"), prov)
    facts = tables["facts"]
    log.info("memory %s: top-1 %.3f over %d facts", run, facts["top1"].mean(), len(facts))


def _summary(args, s: dict) -> None:
    from .summary import memory_finding, memory_tables

    n_boot = s["analysis"]["topology"]["n_bootstrap"]
    inputs = {name: io.read_parquets(getattr(args, name)) for name in MEASURES}
    tables = memory_tables(inputs, n_boot, s["seed"])
    prov = io.provenance("memory_summary", s["seed"], s)
    for name, table in tables.items():
        io.write_parquet(table, getattr(args, f"out_{name}"), prov)
    io.write_json({**memory_finding(inputs, n_boot, s["seed"], tables), "provenance": prov}, args.out_json)


MEASURES = ("facts", "paragraphs", "documents", "circuits", "generations")  # one table each per point
SUMMARIES = ("recall", "interference", "locality", "layers", "generation")


def add_parser(subparsers) -> None:
    acts = actions(subparsers, "memory", "document memory: allocate where each document is stored", run,
                   __doc__.split("\n")[0])
    a = command(acts, "documents", "documents and their shingle clusters", "memory", _documents)
    add_paths(a, "bios", "entities", "probes", "out_documents", "out_clusters", "report")
    a = command(acts, "allocations", "every allocation of slots, in one model's MLP width", "memory", _allocations)
    add_paths(a, "documents", "clusters", "out_allocations", "report")
    a = command(acts, "train", "train one run of the sweep", "memory", _train)
    a.add_argument("--point", help="the point as JSON (by hand; the rules pass it in --settings)")
    add_paths(a, "start", "documents", "allocations", "tokenizer", "scratch", "out")
    add_job_arguments(a)
    a = command(acts, "measure", "measure one point of the sweep", "memory", _measure)
    a.add_argument("--point", help="the point as JSON (by hand; the rules pass it in --settings)")
    add_paths(a, "model", "documents", "allocations", "probes", "pairs", "tokenizer",
              *[f"out_{name}" for name in MEASURES])
    add_job_arguments(a)
    a = command(acts, "summary", "the sweep's tables across points and seeds, and the finding", "memory", _summary)
    add_paths(a, *MEASURES, many=True)
    add_paths(a, *[f"out_{name}" for name in SUMMARIES], "out_json")


def run(args) -> None:
    set_threads(getattr(args, "threads", None))
    run_handler(args)


__all__ = ["add_parser", "run", "POINT", "MEASURES", "SUMMARIES"]
