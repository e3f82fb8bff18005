"""Command-line entry point: one subcommand per stage, called by the Snakemake rules or by hand.

Each stage takes its settings either as JSON (`--settings`, what the rules pass: the config sections
the stage reads plus the seed) or from config files (`--config config.yaml [more.yaml]`, merged and
validated exactly as the Snakefile does). Example, by hand:

    python -m kcircuits entities --config config.yaml --out /tmp/entities.parquet --report /tmp/e.json
"""
from __future__ import annotations

import os

# Before anything can import torch: idle OpenMP threads must sleep, not spin, on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from . import io
from .config import ConfigError, load_config, resource_dir, stage_rng, stage_settings, validate_config

log = logging.getLogger("kcircuits")


def _settings(args, stage: str) -> dict:
    if args.settings:
        return json.loads(args.settings)
    cfg = validate_config(load_config(args.config), root=Path(args.config[0]).resolve().parent)
    args.cfg = cfg
    return stage_settings(cfg, stage)


def _resource(args, key: str) -> Path:
    explicit = getattr(args, key)
    if explicit:
        return Path(explicit)
    if getattr(args, "cfg", None) is None:
        raise ConfigError(f"--{key} is required with --settings")
    return resource_dir(args.cfg, key, root=Path(args.config[0]).resolve().parent)


def cmd_entities(args) -> None:
    from .data.entities import generate_entities
    from .resources import load_pools

    s = _settings(args, "entities")
    df, report = generate_entities(s, load_pools(_resource(args, "pools")), stage_rng(s["seed"], "entities"))
    prov = io.provenance("entities", s["seed"], s)
    io.write_parquet(df, args.out, prov)
    io.write_json({**report, "provenance": prov}, args.report)
    log.info("entities: %s", report["by_type"])


def cmd_biographies(args) -> None:
    from .data.biographies import biographies_report, generate_biographies
    from .resources import load_templates

    s = _settings(args, "biographies")
    entities = pd.read_parquet(args.entities)
    corpora = generate_biographies(s, entities, load_templates(_resource(args, "templates")),
                                   stage_rng(s["seed"], "biographies"))
    for name, rows in corpora.items():
        io.write_jsonl(rows, Path(args.out_dir) / f"{name}.jsonl")
    report = biographies_report(corpora)
    io.write_json({**report, "provenance": io.provenance("biographies", s["seed"], s)}, args.report)
    log.info("biographies: %s", {k: v["paragraphs"] for k, v in report.items()})


def cmd_probes(args) -> None:
    from .data.probes import probe_rows, sample_probe_entities
    from .resources import load_templates

    s = _settings(args, "probes")
    entities = pd.read_parquet(args.entities)
    groups = _group_order(entities)
    templates = load_templates(_resource(args, "templates"))
    chosen, report = sample_probe_entities(entities, s["probes"]["n_per_group"], groups, stage_rng(s["seed"], "probes"))
    prov = io.provenance("probes", s["seed"], s)
    io.write_parquet(probe_rows(chosen, templates, paraphrase=False), args.out, prov)
    io.write_parquet(probe_rows(chosen, templates, paraphrase=True), args.out_paraphrase, prov)
    io.write_json({"cells": report, "entities": int(len(chosen)), "provenance": prov}, args.report)


def _group_order(entities: pd.DataFrame) -> list[str]:
    """Frequency groups in ascending order of frequency, as the entities stage assigned them."""
    probed = entities[entities["freq_group"].notna()]
    return list(probed.groupby("freq_group")["frequency"].min().sort_values().index)


def _probe_entities(entities: pd.DataFrame, probes_path: str) -> pd.DataFrame:
    ids = pd.read_parquet(probes_path, columns=["entity_id"])["entity_id"].unique()
    return entities[entities["entity_id"].isin(ids)].reset_index(drop=True)


def cmd_qa(args) -> None:
    from .data.qa import multiple_choice, true_false, value_pools
    from .resources import load_pools, load_templates

    s = _settings(args, "qa")
    entities = pd.read_parquet(args.entities)
    chosen = _probe_entities(entities, args.probes)
    templates = load_templates(_resource(args, "templates"))
    pools = value_pools(load_pools(_resource(args, "pools")), entities)
    rng = stage_rng(s["seed"], "qa")
    mc = multiple_choice(rng, chosen, templates, pools, s["qa"]["n_options"])
    tf = true_false(rng, chosen, templates, pools)
    io.write_jsonl(mc, args.out_mc)
    io.write_jsonl(tf, args.out_tf)
    io.write_json({"multiple_choice": len(mc), "true_false": len(tf),
                   "true_false_true": sum(r["label"] for r in tf),
                   "provenance": io.provenance("qa", s["seed"], s)}, args.report)


def cmd_tokenizer(args) -> None:
    from .resources import load_pools
    from .tokenizer import first_token_report, load_tokenizer, train_bpe

    s = _settings(args, "tokenizer")
    t = s["tokenizer"]
    if t["kind"] == "bpe":
        texts = [r["text"] for path in args.corpus for r in io.read_jsonl(path)]
        tok = train_bpe(texts, t.get("vocab_size", 2048), t.get("min_frequency", 2))
    else:
        tok = load_tokenizer(t["path"])
    with io.atomic_path(args.out_dir, is_dir=True) as tmp:
        tok.save_pretrained(str(tmp))
    report = first_token_report(tok, load_pools(_resource(args, "pools")))
    io.write_json({"vocab_size": len(tok), "first_tokens": report,
                   "provenance": io.provenance("tokenizer", s["seed"], s, "tokenizers", "transformers")},
                  args.report)
    log.info("tokenizer: vocab %d", len(tok))


def cmd_circuit_pairs(args) -> None:
    from .data.pairs import circuit_pairs
    from .tokenizer import load_tokenizer

    s = _settings(args, "circuit_pairs")
    entities = pd.read_parquet(args.entities)
    chosen = _probe_entities(entities, args.probes)
    pairs, report = circuit_pairs(s["circuit_pairs"]["tasks"], chosen, _group_order(entities),
                                  load_tokenizer(args.tokenizer), stage_rng(s["seed"], "circuit_pairs"))
    prov = io.provenance("circuit_pairs", s["seed"], s, "tokenizers", "transformers")
    io.write_parquet(pairs, args.out, prov)
    unpaired = sum(c["subjects"] - c["paired"] for c in report.values())
    io.write_json({"cells": report, "pairs": int(len(pairs)), "unpaired_subjects": unpaired,
                   "provenance": prov}, args.report)
    log.info("circuit pairs: %d pairs, %d subjects without a partner", len(pairs), unpaired)


def _execution(args) -> dict:
    """Device, DeepSpeed config and save interval: from --execution, else from --config files."""
    from .train.schedule import execution_settings

    if args.execution:
        return json.loads(args.execution)
    return execution_settings(args.cfg) if getattr(args, "cfg", None) else {}


def _relaunched(args) -> bool:
    """--processes N > 1 (or a DeepSpeed config): run this same command under torch.distributed.run,
    one process per GPU, and wait for it (kcircuits.train.launch); True when it did."""
    import subprocess

    from .train.launch import launcher_command, needs_launcher

    _settings(args, "train")  # validates --config files (and keeps them for _execution)
    if not needs_launcher(args.processes, _execution(args).get("deepspeed")):
        return False
    cmd, env = launcher_command(args.argv, args.processes)
    log.info("launching %d training processes: %s", max(1, args.processes or 1), " ".join(cmd))
    subprocess.run(cmd, check=True, env={**os.environ, **env})
    return True


def cmd_train_base(args) -> None:
    from .train.jobs import train_base

    if _relaunched(args):
        return
    record = train_base(_settings(args, "train"), _execution(args), args.corpus, args.tokenizer, args.scratch,
                        args.out, threads=args.threads, tensorboard_dir=args.tensorboard_dir)
    log.info("base: %d steps, %d tokens", record["global_step"], record["tokens_seen"])


def cmd_continual_corpus(args) -> None:
    from .train.jobs import continual_corpus

    summary = continual_corpus(_settings(args, "train"), args.corpus, args.tokenizer, args.blocks, args.summary)
    log.info("continual corpus: %d blocks, %d steps per epoch", summary["blocks"], summary["steps_per_epoch"])


def cmd_train_continual(args) -> None:
    from .train.jobs import train_continual

    if _relaunched(args):
        return
    train_continual(_settings(args, "train"), _execution(args), args.start, args.blocks, args.summary, args.tokenizer,
                    args.scratch, args.out, until_epoch=args.until_epoch, until_step=args.until_step,
                    threads=args.threads, tensorboard_dir=args.tensorboard_dir)


def cmd_export_checkpoint(args) -> None:
    from .train.jobs import export_epoch, export_start

    s = _settings(args, "train")
    if args.name == "epoch-000":
        if not args.summary:
            raise ConfigError("--summary is required to export epoch-000")
        export_start(args.name, args.source, args.init, args.summary, args.tokenizer, args.out, s["seed"])
    else:
        export_epoch(args.name, args.source, args.tokenizer, args.out)


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """Where a stage's settings come from: --settings JSON (the rules) or --config files (by hand)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--settings", help="JSON settings (what the Snakemake rule passes)")
    src.add_argument("--config", nargs="+", help="config YAML file(s), merged left to right")


def _add_training_stages(sub) -> None:
    """Training subcommands: settings as for every stage, plus execution detail and job targets."""
    def stage(name, func, help_text):
        p = sub.add_parser(name, help=help_text)
        add_settings_arguments(p)
        p.set_defaults(func=func)
        return p

    def job(p):
        p.add_argument("--execution", help="JSON: device, deepspeed, save_steps (default: from --config)")
        p.add_argument("--scratch", required=True, help="resumable saves of this job (kept across reruns)")
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads (shared by the processes)")
        p.add_argument("--processes", type=int, default=1,
                       help="training processes on this node, one per GPU (>1: relaunch under torch.distributed.run)")
        p.add_argument("--tensorboard-dir", dest="tensorboard_dir", help="TensorBoard logs, if tensorboard is installed")

    p = stage("train-base", cmd_train_base, "train the base world from scratch")
    job(p)
    for f in ("corpus", "tokenizer", "out"):
        p.add_argument(f"--{f}", required=True)
    p = stage("continual-corpus", cmd_continual_corpus, "pack the continual corpus into training blocks")
    for f in ("corpus", "tokenizer", "blocks", "summary"):
        p.add_argument(f"--{f}", required=True)
    p = stage("train-continual", cmd_train_continual, "continual pre-training up to an epoch or a step")
    job(p)
    for f in ("start", "blocks", "summary", "tokenizer", "out"):
        p.add_argument(f"--{f}", required=True)
    until = p.add_mutually_exclusive_group(required=True)
    until.add_argument("--until-epoch", dest="until_epoch", type=int, help="output: resumable state after this epoch")
    until.add_argument("--until-step", dest="until_step", type=int, help="output: exported checkpoint at this step")
    p = stage("export-checkpoint", cmd_export_checkpoint, "write a model-only checkpoint folder")
    for f in ("name", "source", "tokenizer", "out"):
        p.add_argument(f"--{f}", required=True)
    p.add_argument("--summary", help="continual corpus.json (steps per epoch; needed for epoch-000)")
    p.add_argument("--init", action="store_true", help="the source is model.init, not the base model")


def cmd_evaluate(args) -> None:
    import torch

    from .evaluate.knowledge import checkpoint_metadata, evaluate_checkpoint, load_inputs
    from .evaluate.scoring import load_model
    from .tokenizer import load_tokenizer

    s = _settings(args, "evaluate")
    if args.threads:
        torch.set_num_threads(args.threads)
    inputs = load_inputs(args.entities, args.probes, args.paraphrase, args.bios_val, args.base_val, args.mc, args.tf)
    meta = checkpoint_metadata(args.checkpoint)
    model = load_model(args.checkpoint, "cuda" if torch.cuda.is_available() else "cpu")
    cells, entity_table = evaluate_checkpoint(model, load_tokenizer(args.tokenizer), inputs, s)
    prov = {**io.provenance("evaluate", s["seed"], s, "torch", "transformers"), "checkpoint": meta}
    io.write_parquet(cells.assign(**meta)[list(meta) + list(cells.columns)], args.out, prov)
    io.write_parquet(entity_table.assign(**meta)[list(meta) + list(entity_table.columns)], args.out_entities, prov)
    log.info("%s: %d cells", meta["checkpoint"], len(cells))


def cmd_eval_summary(args) -> None:
    from .evaluate.aggregate import summarise, summarise_entities

    s = _settings(args, "evaluate")
    prov = io.provenance("eval_summary", s["seed"], s)
    io.write_parquet(summarise([pd.read_parquet(p) for p in args.evals]), args.out, prov)
    io.write_parquet(summarise_entities([pd.read_parquet(p) for p in args.entity_evals]), args.out_entities, prov)


def cmd_figure(args) -> None:
    from .figures import acquisition as fig

    s = _settings(args, "figures")
    groups = fig.group_order(pd.read_parquet(args.entities))
    table = pd.concat([pd.read_parquet(p) for p in args.table], ignore_index=True)  # one per training seed
    if args.kind == "acquisition":
        fig.plot_acquisition(table, groups, s["evaluate"]["hit_k"], args.pdf, args.png)
    elif args.kind == "overwriting":
        fig.plot_overwriting(table, groups, args.pdf, args.png)
    else:
        fig.plot_heatmap(table, groups, args.pdf, args.png)


def _add_evaluation_stages(stage) -> None:
    """Evaluation and figure subcommands, declared with build_parser's `stage` helper."""
    p = stage("evaluate", cmd_evaluate, "knowledge metrics of one checkpoint", "checkpoint", "tokenizer", "entities",
              "probes", "paraphrase", "bios_val", "base_val", "mc", "tf", "out", "out_entities")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    stage("eval-summary", cmd_eval_summary, "join per-checkpoint evaluations", "evals", "entity_evals", "out",
          "out_entities")
    p = stage("figure", cmd_figure, "an acquisition figure (PDF and PNG)", "table", "entities", "pdf", "png")
    p.add_argument("--kind", required=True, choices=["acquisition", "overwriting", "heatmap"],
                   help="acquisition/overwriting read the summary table, heatmap the per-entity table")


# Stages with actions (`kcircuits NAME ACTION ...`): the module declares its arguments
# (add_arguments) and runs them (run); it must import without torch, so the CLI starts fast.
ACTION_STAGES = (
    ("circuits", "circuits.stage", "circuits", "knowledge circuits: EAP-IG scores, selection, evaluation, transplant"),
    ("circuit-figure", "figures.circuits", "circuits", "a knowledge-circuit figure across training (PDF and PNG)"),
    ("topology", "analysis.topology_stage", "analysis",
     "circuit topology across checkpoints: Jaccard, layers, phase shift, depth"),
    ("components", "analysis.components_stage", "analysis",
     "specialised heads and the logit lens per checkpoint, summaries, figures"),
    ("results", "analysis.report_stage", "analysis", "the tidy table across seeds and checkpoints; findings summary"),
)


def _add_action_stages(sub) -> None:
    import importlib

    for name, module_name, stage, help_text in ACTION_STAGES:
        module = importlib.import_module(f".{module_name}", __package__)
        p = sub.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(func=lambda args, module=module, stage=stage: module.run(args, _settings(args, stage)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kcircuits", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)

    def stage(name, func, help_text, *files):
        p = sub.add_parser(name, help=help_text)
        add_settings_arguments(p)
        for f in files:
            p.add_argument(f"--{f.replace('_', '-')}", dest=f, required=f not in ("pools", "templates"),
                           nargs="+" if f in ("corpus", "evals", "entity_evals", "table") else None)
        p.set_defaults(func=func)
        return p

    stage("entities", cmd_entities, "generate the entity table", "pools", "out", "report")
    stage("biographies", cmd_biographies, "write the biography corpora", "templates", "entities", "out_dir", "report")
    stage("probes", cmd_probes, "sample probe entities and prompts", "templates", "entities", "out",
          "out_paraphrase", "report")
    stage("qa", cmd_qa, "multiple-choice and true/false items", "pools", "templates", "entities", "probes",
          "out_mc", "out_tf", "report")
    stage("tokenizer", cmd_tokenizer, "train or copy the tokenizer", "pools", "corpus", "out_dir", "report")
    stage("circuit-pairs", cmd_circuit_pairs, "clean/corrupted pairs for circuit discovery", "entities",
          "probes", "tokenizer", "out", "report")
    _add_training_stages(sub)
    _add_evaluation_stages(stage)
    _add_action_stages(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to relaunch the same command (training)
    try:
        args.func(args)
    except ConfigError as err:
        print(f"kcircuits: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
