"""The data stages: `kcircuits entities | biographies | probes | qa | tokenizer | circuit-pairs ...`.

One command per Snakemake rule (rules/data.smk, rules/tokenizer.smk). --pools / --templates default,
with --config, to the config's resources folders. By hand:

    kcircuits entities --config config.yaml --out /tmp/entities.parquet --report /tmp/e.json
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from .. import io
from ..config import REPO_ROOT, ConfigError
from ..resources import template_files
from ..settings import add_paths, command, optional_resource_path, resource_path, run_handler, stage_pools
from ..stats import stage_rng

log = logging.getLogger("kcircuits")


def _entities(args, s: dict) -> None:
    from .entities import generate_entities, imported_entities

    pools, rng = stage_pools(args), stage_rng(s["seed"], "entities")
    imported = optional_resource_path(args, "imported", "entities")
    if imported is None:
        df, report = generate_entities(s, pools, rng)
    else:  # used as given: only what the table lacks is drawn
        try:
            df, report = imported_entities(s, pd.read_parquet(imported), pools, rng)
        except (ValueError, KeyError) as err:
            raise ConfigError(f"{imported}: {err}") from err
    prov = io.provenance("entities", s["seed"], s)
    io.write_parquet(df, args.out, prov)
    io.write_json({**report, "provenance": prov}, args.report)
    log.info("entities: %s", report["by_type"])


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
    from ..resources import load_templates
    from .probes import probe_entities
    from .qa import multiple_choice, true_false, value_pools

    entities = pd.read_parquet(args.entities)
    chosen = probe_entities(entities, pd.read_parquet(args.probes, columns=["entity_id"]))
    templates = load_templates(resource_path(args, "templates"))
    pools = value_pools(stage_pools(args), entities)
    rng = stage_rng(s["seed"], "qa")
    mc = multiple_choice(rng, chosen, templates, pools, s["qa"]["n_options"])
    tf = true_false(rng, chosen, templates, pools)
    io.write_jsonl(mc, args.out_mc)
    io.write_jsonl(tf, args.out_tf)
    io.write_json({"multiple_choice": len(mc), "true_false": len(tf),
                   "true_false_true": sum(r["label"] for r in tf),
                   "provenance": io.provenance("qa", s["seed"], s)}, args.report)


def _tokenizer(args, s: dict) -> None:
    from ..tokenizer import first_token_report, load_tokenizer, train_bpe

    t = s["tokenizer"]
    if t["kind"] == "bpe":
        texts = [r["text"] for path in args.corpus for r in io.read_jsonl(path)]
        tok = train_bpe(texts, t.get("vocab_size", 2048), t.get("min_frequency", 2))
    else:
        tok = load_tokenizer(t["path"])
    with io.atomic_path(args.out_dir, is_dir=True) as tmp:
        tok.save_pretrained(str(tmp))
    report = first_token_report(tok, stage_pools(args))
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


def _import_world(args, s: dict) -> None:
    from .world import WorldError, import_world, world_files

    try:
        world = import_world(args.source, s["world"]["paraphrase_share"], s["circuit_pairs"]["tasks"],
                             stage_rng(s["seed"], "world"))
    except WorldError as err:  # bad input: one line naming the file
        raise ConfigError(str(err)) from err
    files = world_files(args.out, with_entities=world["entities"] is not None)
    report = world["report"]
    for name, values in world["pools"].items():
        header = f"# imported by kcircuits import-world from {report['pools'][name]['file']}\n"
        _write_text(files[f"pool_{name}"], header + "".join(f"{v}\n" for v in values))
    for name in ("biography", "paraphrase"):
        _write_text(files[f"templates_{name}"], _templates_yaml(world[name], name))
    shipped = template_files(REPO_ROOT / "resources" / "templates")
    for name in report["project_templates"]:
        _write_text(files[f"templates_{name}"], shipped[name].read_text(encoding="utf-8"))
    if world["entities"] is not None:
        from .entities import BIRTH_FIELDS
        from .world import ENTITY_COLUMNS

        table = pd.DataFrame(world["entities"], columns=list(ENTITY_COLUMNS))
        io.write_parquet(table.astype({c: "Int64" for c in BIRTH_FIELDS}), files["entities"])
    io.write_json({**report, "source": str(args.source), "provenance": io.provenance("import_world", s["seed"], s)},
                  files["report"])
    _log_world(report)


def _write_text(path, text: str) -> None:
    with io.atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _templates_yaml(templates: dict[str, list[str]], name: str) -> str:
    import yaml

    header = {"biography": "# Training templates (kcircuits import-world); name-first ones give query prompts.\n",
              "paraphrase": "# Held-out paraphrase prompts (kcircuits import-world): never in training text.\n"}[name]
    return header + yaml.safe_dump(templates, sort_keys=False, allow_unicode=True, width=1000)


def _log_world(report: dict) -> None:
    for name, r in report["pools"].items():
        log.info("import-world: pool %s from %s: %d values, %d duplicates dropped%s", name, r["file"], r["kept"],
                 len(r["duplicates"]), f", {len(r['unusable'])} unusable" if r["unusable"] else "")
    for attr, groups in report["shared_first_words"].items():
        if groups:
            log.info("import-world: %s values sharing a first word: %s", attr, {w: len(v) for w, v in groups.items()})
    for attr, r in report["templates"].items():
        log.info("import-world: %s templates: %d read, %d duplicates and %d unusable dropped, %d value-before-name "
                 "(training only), %d held out as paraphrases, %d query prompts", attr, r["read"], len(r["duplicates"]),
                 len(r["dropped"]), len(r["value_before_name"]), len(r["paraphrase"]), r["query_prompts"])
    if report["entities"]:
        e = report["entities"]
        log.info("import-world: entities from %s: %d new, %d revised, %d repeated names dropped", e["folder"],
                 e["new"], e["revised"], len(e["repeated_names"]))


def add_parser(subparsers) -> None:
    def stage(name, settings_stage, handler, help_text, resources=()):
        p = command(subparsers, name, help_text, settings_stage, handler)
        add_paths(p, *resources, required=False)  # default (with --config): the config's resources
        p.set_defaults(run=run)
        return p

    p = stage("entities", "entities", _entities, "the entity table: generated, or imported ones completed",
              ("pools",))
    add_paths(p, "out", "report")
    add_paths(p, "imported", required=False)  # default (with --config): resources.entities
    p = command(subparsers, "import-world", "import a world laid out like the original study's data/ folder",
                "world", _import_world, settings_required=False)
    p.add_argument("source", help="the folder (selection_pool/, templates/, optional entities_*/)")
    p.add_argument("out", help="where pools/, templates/, entities.parquet and world.json go")
    p.set_defaults(run=run, schema_only=True)  # --config: schema only; the other checks read the world it writes
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
