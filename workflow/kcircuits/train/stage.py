"""The training stages: `kcircuits train-base | continual-corpus | train-continual | export-checkpoint |
train-stream`.

One command per Snakemake rule (rules/train.smk); the work is in jobs.py. Settings as for every stage
(the `train` sections); execution detail (device, DeepSpeed config, save interval) comes from
--execution JSON, or from the --config files, outside the settings so changing it retrains nothing.
With --processes N > 1 (or a DeepSpeed config) a training command re-runs itself under
torch.distributed.run, one process per GPU (launch.py), and waits for it.
"""
from __future__ import annotations

import json
import logging
import os

from ..config import ConfigError
from ..settings import add_paths, command, run_handler

log = logging.getLogger("kcircuits")


def _execution(args, kind: str = "train") -> dict:
    """Device, DeepSpeed config and save interval: from --execution, else from --config files
    (compute.KIND: train, or stream for train-stream)."""
    from .schedule import execution_settings

    if args.execution:
        return json.loads(args.execution)
    return execution_settings(args.cfg, kind) if getattr(args, "cfg", None) else {}


def _relaunched(args) -> bool:
    """Run this same command under torch.distributed.run when it needs several processes (or
    DeepSpeed) and is not already inside it; True when it did."""
    import subprocess

    from .launch import launcher_command, needs_launcher

    if not needs_launcher(args.processes, _execution(args).get("deepspeed")):
        return False
    cmd, env = launcher_command(args.argv, args.processes)
    log.info("launching %d training processes: %s", max(1, args.processes or 1), " ".join(cmd))
    subprocess.run(cmd, check=True, env={**os.environ, **env})
    return True


def _train_base(args, s: dict) -> None:
    from .jobs import train_base

    if _relaunched(args):
        return
    record = train_base(s, _execution(args), args.corpus, args.tokenizer, args.scratch, args.out,
                        threads=args.threads, tensorboard_dir=args.tensorboard_dir)
    log.info("base: %d steps, %d tokens", record["global_step"], record["tokens_seen"])


def _continual_corpus(args, s: dict) -> None:
    from .jobs import continual_corpus

    summary = continual_corpus(s, args.corpus, args.tokenizer, args.blocks, args.summary)
    log.info("continual corpus: %d blocks, %d steps per epoch", summary["blocks"], summary["steps_per_epoch"])


def _train_continual(args, s: dict) -> None:
    from .jobs import train_continual

    if _relaunched(args):
        return
    train_continual(s, _execution(args), args.start, args.blocks, args.summary, args.tokenizer, args.scratch,
                    args.out, until_epoch=args.until_epoch, until_step=args.until_step, threads=args.threads,
                    tensorboard_dir=args.tensorboard_dir)


def _train_stream(args, s: dict) -> None:
    from .jobs import train_stream

    if _relaunched(args):
        return
    if "stream" not in s:  # by hand with --config: the study's section becomes the run's settings
        from .schedule import stream_settings

        s = stream_settings(s, args.study, s["seed"])
    train_stream(s, _execution(args, "stream"), args.study, args.start, args.blocks, args.tokenizer, args.scratch,
                 args.out, threads=args.threads, tensorboard_dir=args.tensorboard_dir)


def _export_checkpoint(args, s: dict) -> None:
    from .jobs import export_epoch, export_start

    if args.name == "epoch-000":
        if not args.summary:
            raise ConfigError("--summary is required to export epoch-000")
        export_start(args.name, args.source, args.init, args.summary, args.tokenizer, args.out, s["seed"])
    else:
        export_epoch(args.name, args.source, args.tokenizer, args.out)


def _add_job_options(p) -> None:
    """Options of a training job: execution detail, resumable saves, threads, processes."""
    p.add_argument("--execution", help="JSON: device, deepspeed, save_steps (default: from --config)")
    p.add_argument("--scratch", required=True, help="resumable saves of this job (kept across reruns)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (shared by the processes)")
    p.add_argument("--processes", type=int, default=1,
                   help="training processes on this node, one per GPU (>1: relaunch under torch.distributed.run)")
    p.add_argument("--tensorboard-dir", dest="tensorboard_dir", help="TensorBoard logs, if tensorboard is installed")


def add_parser(subparsers) -> None:
    def stage(name, handler, help_text):
        p = command(subparsers, name, help_text, "train", handler)
        p.set_defaults(run=run)
        return p

    p = stage("train-base", _train_base, "train the base world from scratch")
    _add_job_options(p)
    add_paths(p, "corpus", "tokenizer", "out")
    p = stage("continual-corpus", _continual_corpus, "pack the continual corpus into training blocks")
    add_paths(p, "corpus", "tokenizer", "blocks", "summary")
    p = stage("train-continual", _train_continual, "continual pre-training up to an epoch or a step")
    _add_job_options(p)
    add_paths(p, "start", "blocks", "summary", "tokenizer", "out")
    until = p.add_mutually_exclusive_group(required=True)
    until.add_argument("--until-epoch", dest="until_epoch", type=int, help="output: resumable state after this epoch")
    until.add_argument("--until-step", dest="until_step", type=int, help="output: resumable state after this step")
    p = command(subparsers, "train-stream", "one ordered pass over a stream of blocks, checkpoints on a schedule",
                "stream", _train_stream)
    p.set_defaults(run=run)
    _add_job_options(p)
    add_paths(p, "study", "start", "blocks", "tokenizer", "out")
    p = stage("export-checkpoint", _export_checkpoint, "write a model-only checkpoint folder")
    add_paths(p, "name", "source", "tokenizer", "out")
    p.add_argument("--summary", help="continual corpus.json (steps per epoch; needed for epoch-000)")
    p.add_argument("--init", action="store_true", help="the source is model.init, not the base model")


def run(args) -> None:
    run_handler(args)


__all__ = ["add_parser", "run"]
