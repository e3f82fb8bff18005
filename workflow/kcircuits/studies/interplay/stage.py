"""The knowledge-interplay stage: `kcircuits interplay ACTION ...`, one action per rule (rules.smk).

    order-corpus       per-fact sentences, every stream (random; all A before all B), packed in order
    forgetting-corpus  the forgetting corpora (other new entities, conflicting facts for the probed
                       ones) and the learned facts whose forgetting is followed
    forgetting-mix     one seed's training streams: a forgetting corpus with a share of replay blocks
    measure            accuracy and circuits of every checkpoint of one stream run
    order-summary      interference / synergy per ordered pair, circuit overlap with the random order
    forgetting-summary recall and circuits against steps per replay share; the replay finding

Training a stream is `kcircuits train-stream` (the project's trainer). Settings: the `interplay`
sections (the study record's `sections`); rules pass only the keys each action reads.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ... import io
from ...settings import (
    actions,
    add_job_arguments,
    add_paths,
    command,
    resource_path,
    run_handler,
    set_threads,
    stage_pools,
)
from ...stats import stage_rng

log = logging.getLogger("kcircuits")


def _order_corpus(args, s: dict) -> None:
    from ...data.probes import probe_entities
    from ...resources import load_templates
    from ...tokenizer import load_tokenizer
    from ...train.corpus import pack_texts
    from .streams import build_streams, check_types, fact_sentences, knowledge_types, stream_texts, streams_frame

    o = s["order"]
    types = knowledge_types(o["types"])
    check_types(types, o["entity_types"])
    entities = probe_entities(pd.read_parquet(args.entities), pd.read_parquet(args.probes, columns=["entity_id"]))
    entities = entities[entities["type"].isin(o["entity_types"])]
    if o["entities"] is not None and len(entities) > o["entities"]:  # a seeded sample, in entity order
        entities = entities.iloc[np.sort(stage_rng(s["seed"], "order_entities").choice(len(entities), o["entities"],
                                                                                      replace=False))]
    sentences = fact_sentences(entities, load_templates(resource_path(args, "templates")), types, o["repeats"],
                               stage_rng(s["seed"], "order_corpus"))
    streams = build_streams(sentences, types, stage_rng(s["seed"], "order_streams"))
    if list(streams) != [Path(p).stem for p in args.out_blocks]:
        raise SystemExit(f"--out-blocks must name the streams in order: {list(streams)}")
    tok = load_tokenizer(args.tokenizer)
    packed = {name: pack_texts(stream_texts(sentences, order), tok, s["train"]["block_size"], fill="eos")[0]
              for name, order in streams.items()}
    n_blocks, report = max(len(b) for b in packed.values()), {}
    for path, (name, blocks) in zip(args.out_blocks, packed.items()):
        # where a sentence is cut at a block's end differs by stream: end-of-text blocks make every
        # stream as long as the longest, so every run takes the same steps
        fill = np.full((n_blocks - len(blocks), blocks.shape[1]), tok.eos_token_id, dtype=blocks.dtype)
        io.save_npz(path, blocks=np.concatenate([blocks, fill]).astype("int32"))
        report[name] = {"blocks": int(len(blocks)), "end_of_text_blocks": int(len(fill))}
    prov = io.provenance("order_corpus", s["seed"], s, "tokenizers", "transformers")
    io.write_parquet(sentences, args.out_sentences, prov)
    io.write_parquet(streams_frame(streams), args.out_streams, prov)
    counts = sentences.groupby("knowledge").size().to_dict()
    io.write_json({"sentences": int(len(sentences)), "by_knowledge": counts, "entities": int(entities.shape[0]),
                   "streams": report, "provenance": prov}, args.report)
    log.info("order corpus: %d sentences %s, %d streams", len(sentences), counts, len(streams))


def _forgetting_corpus(args, s: dict) -> None:
    from ...data.entities import other_entities
    from ...data.probes import probe_entities
    from ...resources import load_templates
    from .forgetting import conflicting_entities, corpus_paragraphs, followed_facts

    f, years = s["forgetting"], s["entities"]["birth_years"]
    entities, pools = pd.read_parquet(args.entities), stage_pools(args)
    templates = load_templates(resource_path(args, "templates"))
    probed = probe_entities(entities, pd.read_parquet(args.probes, columns=["entity_id"]))
    prov = io.provenance("forgetting_corpus", s["seed"], s)
    followed = followed_facts(probed, f["entities_per_cell"], stage_rng(s["seed"], "forgetting_facts"))
    io.write_parquet(followed, args.out_facts, prov)
    for corpus, table_out, text_out in zip(f["corpora"], args.out_tables, args.out_corpora):
        rng = stage_rng(s["seed"], f"forgetting_{corpus}")
        if corpus == "other_entities":
            table = other_entities(entities, pools, f["entities"], years, f["paragraphs"], rng)
        else:
            table = conflicting_entities(entities, probed["entity_id"], pools, years, f["paragraphs"], rng)
        rows = corpus_paragraphs(table, templates, rng)
        io.write_parquet(table, table_out, prov)
        io.write_jsonl(rows, text_out)
        log.info("forgetting corpus %s: %d entities, %d paragraphs", corpus, len(table), len(rows))


def _forgetting_mix(args, s: dict) -> None:
    from ...tokenizer import load_tokenizer
    from ...train.corpus import load_blocks, pack_texts
    from .forgetting import replay_mix

    f, t = s["forgetting"], s["train"]
    replay, _ = load_blocks(args.replay)
    tok, n_examples = load_tokenizer(args.tokenizer), f["steps"] * t["batch_size"] * t["grad_accum"]
    branches = iter(args.out_blocks)
    for corpus, text in zip(f["corpora"], args.corpora):
        new, _ = pack_texts([r["text"] for r in io.read_jsonl(text)], tok, t["block_size"])
        for share in f["replay"]:
            rng = stage_rng(s["seed"], f"forgetting_mix_{corpus}_{share}")
            blocks, is_replay = replay_mix(new, replay, n_examples, share, rng)
            io.save_npz(next(branches), blocks=blocks.astype("int32"), is_replay=is_replay)
            log.info("%s, replay %g: %d blocks, %d replayed", corpus, share, len(blocks), int(is_replay.sum()))


def _measure(args, s: dict) -> None:
    import json

    from ...evaluate.facts import select_facts
    from ...tokenizer import load_tokenizer
    from .measure import measure_run, run_checkpoints

    probes, pairs, tasks = select_facts(pd.read_parquet(args.probes), pd.read_parquet(args.pairs),
                                        pd.read_parquet(args.facts), s["circuit_pairs"]["tasks"])
    labels = json.loads(args.labels)
    tables = measure_run(run_checkpoints(args.start, args.checkpoints), load_tokenizer(args.tokenizer), probes, pairs,
                         tasks, s, s[labels["study"]]["max_pairs"], args.device)
    prov = io.provenance("interplay_measure", s["seed"], s, "torch", "transformers")
    for name, out in (("accuracy", args.out_accuracy), ("circuits", args.out_circuits), ("hits", args.out_hits)):
        io.write_parquet(io.with_leading_columns(tables[name], labels), out, prov)


def _order_summary(args, s: dict) -> None:
    from .streams import check_types, knowledge_types
    from .summary import order_curves, order_finding, order_outcome, order_overlap

    o, n_boot = s["order"], s["analysis"]["topology"]["n_bootstrap"]
    types = knowledge_types(o["types"])
    grouping = check_types(types, o["entity_types"])
    accuracy = io.read_parquets(args.accuracy)
    outcome = order_outcome(accuracy, types, grouping, n_boot, s["seed"])
    prov = io.provenance("order_summary", s["seed"], s)
    io.write_parquet(outcome, args.out_outcome, prov)
    io.write_parquet(order_curves(accuracy, types, grouping), args.out_curves, prov)
    overlap = order_overlap(io.read_parquets(args.circuits), io.read_parquets(args.hits), types, grouping)
    io.write_parquet(overlap, args.out_overlap, prov)
    io.write_json({**order_finding(outcome), "provenance": prov}, args.out_json)


def _forgetting_summary(args, s: dict) -> None:
    from .summary import forgetting_circuits, forgetting_finding, forgetting_recall

    recall = forgetting_recall(io.read_parquets(args.accuracy))
    prov = io.provenance("forgetting_summary", s["seed"], s)
    io.write_parquet(recall, args.out_recall, prov)
    io.write_parquet(forgetting_circuits(io.read_parquets(args.circuits), io.read_parquets(args.hits)),
                     args.out_circuits, prov)
    io.write_json({**forgetting_finding(recall, s["forgetting"]["tolerance"]), "provenance": prov}, args.out_json)


def add_parser(subparsers) -> None:
    acts = actions(subparsers, "interplay", "knowledge order and forgetting: corpora, streams, measures, summaries",
                   run, __doc__.split("\n")[0])
    a = command(acts, "order-corpus", "per-fact sentences and every order stream, packed", "interplay", _order_corpus)
    add_paths(a, "templates", required=False)
    add_paths(a, "entities", "probes", "tokenizer", "out_sentences", "out_streams", "report")
    add_paths(a, "out_blocks", many=True)
    a = command(acts, "forgetting-corpus", "other entities / conflicting facts paragraphs", "interplay",
                _forgetting_corpus)
    add_paths(a, "pools", "templates", required=False)
    add_paths(a, "entities", "probes", "out_facts")
    add_paths(a, "out_tables", "out_corpora", many=True)
    a = command(acts, "forgetting-mix", "one seed's forgetting streams with replay", "interplay", _forgetting_mix)
    add_paths(a, "replay", "tokenizer")
    add_paths(a, "corpora", "out_blocks", many=True)
    a = command(acts, "measure", "accuracy and circuits of every checkpoint of one run", "interplay", _measure)
    add_paths(a, "start", "checkpoints", "probes", "pairs", "facts", "tokenizer", "labels", "out_accuracy",
              "out_circuits", "out_hits")
    add_job_arguments(a)
    a = command(acts, "order-summary", "interference / synergy per ordered pair", "interplay", _order_summary)
    add_paths(a, "accuracy", "circuits", "hits", many=True)
    add_paths(a, "out_outcome", "out_curves", "out_overlap", "out_json")
    a = command(acts, "forgetting-summary", "recall and circuits against steps per replay share", "interplay",
                _forgetting_summary)
    add_paths(a, "accuracy", "circuits", "hits", many=True)
    add_paths(a, "out_recall", "out_circuits", "out_json")


def run(args) -> None:
    set_threads(getattr(args, "threads", None))
    run_handler(args)


__all__ = ["add_parser", "run"]
