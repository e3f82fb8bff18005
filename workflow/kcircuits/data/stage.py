"""The data stages: `kcircuits entities | companies | biographies | probes | qa | tokenizer | circuit-pairs ...`.

One command per Snakemake rule (rules/data.smk, rules/tokenizer.smk). --pools / --templates default,
with --config, to the config's resources folders. By hand:

    kcircuits entities --config config.yaml --out /tmp/entities.parquet --report /tmp/e.json
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .. import io
from ..config import stage_rng
from ..settings import add_paths, command, resource_path, run_handler

log = logging.getLogger("kcircuits")


def _entities(args, s: dict) -> None:
    from ..resources import load_pools
    from .entities import generate_entities

    df, report = generate_entities(s, load_pools(resource_path(args, "pools")), stage_rng(s["seed"], "entities"))
    prov = io.provenance("entities", s["seed"], s)
    io.write_parquet(df, args.out, prov)
    io.write_json({**report, "provenance": prov}, args.report)
    log.info("entities: %s", report["by_type"])


def _companies(args, s: dict) -> None:
    from ..resources import load_pools
    from .entities import headquarters

    pools = load_pools(resource_path(args, "pools"))
    table = headquarters(pools["companies"], pools["cities"], stage_rng(s["seed"], "companies"))
    io.write_parquet(table, args.out, io.provenance("companies", s["seed"], s))
    log.info("companies: %d, headquarters in %d cities", len(table), table["city"].nunique())


def _biographies(args, s: dict) -> None:
    from ..resources import load_templates
    from .biographies import biographies_report, generate_biographies

    entities = pd.read_parquet(args.entities)
    corpora = generate_biographies(s, entities, load_templates(resource_path(args, "templates")),
                                   stage_rng(s["seed"], "biographies"))
    for name, rows in corpora.items():
        io.write_jsonl(rows, Path(args.out_dir) / f"{name}.jsonl")
    report = biographies_report(corpora)
    io.write_json({**report, "provenance": io.provenance("biographies", s["seed"], s)}, args.report)
    log.info("biographies: %s", {k: v["paragraphs"] for k, v in report.items()})


def _probes(args, s: dict) -> None:
    from ..resources import load_templates
    from .entities import group_order
    from .probes import probe_rows, sample_probe_entities

    entities = pd.read_parquet(args.entities)
    templates = load_templates(resource_path(args, "templates"))
    chosen, report = sample_probe_entities(entities, s["probes"]["n_per_group"], group_order(entities),
                                           stage_rng(s["seed"], "probes"))
    prov = io.provenance("probes", s["seed"], s)
    io.write_parquet(probe_rows(chosen, templates, paraphrase=False), args.out, prov)
    io.write_parquet(probe_rows(chosen, templates, paraphrase=True), args.out_paraphrase, prov)
    io.write_json({"cells": report, "entities": int(len(chosen)), "provenance": prov}, args.report)


def _qa(args, s: dict) -> None:
    from ..resources import load_pools, load_templates
    from .probes import probe_entities
    from .qa import multiple_choice, true_false, value_pools

    entities = pd.read_parquet(args.entities)
    chosen = probe_entities(entities, pd.read_parquet(args.probes, columns=["entity_id"]))
    templates = load_templates(resource_path(args, "templates"))
    pools = value_pools(load_pools(resource_path(args, "pools")), entities)
    rng = stage_rng(s["seed"], "qa")
    mc = multiple_choice(rng, chosen, templates, pools, s["qa"]["n_options"])
    tf = true_false(rng, chosen, templates, pools)
    io.write_jsonl(mc, args.out_mc)
    io.write_jsonl(tf, args.out_tf)
    io.write_json({"multiple_choice": len(mc), "true_false": len(tf),
                   "true_false_true": sum(r["label"] for r in tf),
                   "provenance": io.provenance("qa", s["seed"], s)}, args.report)


def _tokenizer(args, s: dict) -> None:
    from ..resources import load_pools
    from ..tokenizer import first_token_report, load_tokenizer, train_bpe

    t = s["tokenizer"]
    if t["kind"] == "bpe":
        texts = [r["text"] for path in args.corpus for r in io.read_jsonl(path)]
        tok = train_bpe(texts, t.get("vocab_size", 2048), t.get("min_frequency", 2))
    else:
        tok = load_tokenizer(t["path"])
    with io.atomic_path(args.out_dir, is_dir=True) as tmp:
        tok.save_pretrained(str(tmp))
    report = first_token_report(tok, load_pools(resource_path(args, "pools")))
    io.write_json({"vocab_size": len(tok), "first_tokens": report,
                   "provenance": io.provenance("tokenizer", s["seed"], s, "tokenizers", "transformers")},
                  args.report)
    log.info("tokenizer: vocab %d", len(tok))


def _circuit_pairs(args, s: dict) -> None:
    from ..tokenizer import load_tokenizer
    from .entities import group_order
    from .pairs import circuit_pairs
    from .probes import probe_entities

    entities = pd.read_parquet(args.entities)
    chosen = probe_entities(entities, pd.read_parquet(args.probes, columns=["entity_id"]))
    pairs, report = circuit_pairs(s["circuit_pairs"]["tasks"], chosen, group_order(entities),
                                  load_tokenizer(args.tokenizer), stage_rng(s["seed"], "circuit_pairs"))
    prov = io.provenance("circuit_pairs", s["seed"], s, "tokenizers", "transformers")
    io.write_parquet(pairs, args.out, prov)
    unpaired = sum(c["subjects"] - c["paired"] for c in report.values())
    io.write_json({"cells": report, "pairs": int(len(pairs)), "unpaired_subjects": unpaired,
                   "provenance": prov}, args.report)
    log.info("circuit pairs: %d pairs, %d subjects without a partner", len(pairs), unpaired)


def add_parser(subparsers) -> None:
    def stage(name, settings_stage, handler, help_text, resources=()):
        p = command(subparsers, name, help_text, settings_stage, handler)
        add_paths(p, *resources, required=False)  # default (with --config): the config's resources
        p.set_defaults(run=run)
        return p

    add_paths(stage("entities", "entities", _entities, "generate the entity table", ("pools",)), "out", "report")
    add_paths(stage("companies", "companies", _companies, "the companies' headquarters (RECKONING's two-hop facts)",
                    ("pools",)), "out")
    add_paths(stage("biographies", "biographies", _biographies, "write the biography corpora", ("templates",)),
              "entities", "out_dir", "report")
    add_paths(stage("probes", "probes", _probes, "sample probe entities and prompts", ("templates",)),
              "entities", "out", "out_paraphrase", "report")
    add_paths(stage("qa", "qa", _qa, "multiple-choice and true/false items", ("pools", "templates")),
              "entities", "probes", "out_mc", "out_tf", "report")
    p = stage("tokenizer", "tokenizer", _tokenizer, "train or copy the tokenizer", ("pools",))
    add_paths(p, "corpus", many=True)
    add_paths(p, "out_dir", "report")
    add_paths(stage("circuit-pairs", "circuit_pairs", _circuit_pairs, "clean/corrupted pairs for circuit discovery"),
              "entities", "probes", "tokenizer", "out", "report")


def run(args) -> None:
    run_handler(args)


__all__ = ["add_parser", "run"]
