"""One function per training job of the pipeline (the CLI subcommands call these).

- `train_base`: the base world, from scratch -> results/{run}/train/base/model/
- `continual_corpus`: continual blocks + steps per epoch -> results/{run}/train/continual/corpus.json
- `train_continual`: continual pre-training up to an epoch or a step -> state/{epoch-EEE,step-SSSSSS}/
- `export_epoch` (any continual state) / `export_start`: model-only checkpoint folders, by copying files
- `train_stream`: one pass over an ordered stream of blocks (knowledge order, forgetting) from a
  checkpoint -> a folder of model-only checkpoints step-SSSSSS on the study's schedule
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from .. import io
from ..checkpoint import load_model
from ..config import ConfigError
from ..tokenizer import load_tokenizer
from . import corpus as corpus_mod
from .export import BASE_INFO, export_checkpoint, start_info
from .launch import is_main_process
from .model import build_model, check_vocabulary, parameter_count
from .schedule import phase_settings, stream_steps
from .trainer import SNAPSHOT_INFO, STATE_INFO, publish, run_training, snapshots, state_info

log = logging.getLogger("kcircuits.train")


class TrainingError(ConfigError):
    """Inputs that cannot produce the requested training job; the message says which."""


def _tokenizer(tokenizer_dir, n_positions: int | None):
    tok = load_tokenizer(tokenizer_dir)
    if n_positions:
        tok.model_max_length = n_positions
    return tok


def check_block_size(settings: dict) -> None:
    block, ctx = settings["train"]["block_size"], settings["model"]["n_positions"]
    if block > ctx:
        raise TrainingError(f"train.block_size ({block}) exceeds model.n_positions ({ctx})")


def train_base(settings: dict, execution: dict, corpus: str, tokenizer_dir: str, scratch: str, out: str,
               threads: int | None = None, tensorboard_dir: str | None = None) -> dict:
    """Train the base world from scratch (or just initialise, when base.epochs is 0) and save it."""
    s = phase_settings(settings, "base")
    check_block_size(s)
    tok = _tokenizer(tokenizer_dir, s["model"]["n_positions"])
    model = build_model(s["model"], tok, s["seed"])
    log.info("base model: %s, %d parameters", s["model"]["family"], parameter_count(model))
    base = s["train"]["base"]
    record = {"epochs": base["epochs"], "global_step": 0, "tokens_seen": 0, "log_history": [],
              "parameters": parameter_count(model), "seed": s["seed"], "settings": s,
              "versions": io.package_versions("torch", "transformers", "accelerate", "safetensors")}
    if base["epochs"] > 0:
        blocks, segments = corpus_mod.build_blocks(corpus, tok, s["train"]["block_size"], s["seed"], "base")
        dataset = corpus_mod.BlockDataset(blocks, segments, s["seed"])
        _, trainer = run_training(model, dataset, s, execution, Path(scratch), base["lr"], epochs=base["epochs"],
                                  inputs=[corpus, tokenizer_dir], threads=threads,
                                  tensorboard_dir=tensorboard_dir and Path(tensorboard_dir))
        model = trainer.model
        record |= {"global_step": trainer.state.global_step, "tokens_seen": int(trainer.state.num_input_tokens_seen),
                   "log_history": trainer.state.log_history,
                   "steps_per_epoch": corpus_mod.steps_per_epoch(len(dataset), s["train"]["batch_size"],
                                                                 s["train"]["grad_accum"])}
    if not is_main_process():  # distributed training: only RANK 0 writes
        return record
    with io.atomic_path(out, is_dir=True) as tmp:
        model.save_pretrained(str(tmp))  # safetensors
        io.write_json(record, tmp / BASE_INFO)
    shutil.rmtree(scratch, ignore_errors=True)
    return record


def continual_corpus(settings: dict, corpus: str, tokenizer_dir: str, blocks_out: str, summary_out: str) -> dict:
    """Tokenise and pack the continual corpus once; every continual job trains on these blocks."""
    s = phase_settings(settings, "corpus")
    tok = _tokenizer(tokenizer_dir, None)
    paragraphs = len(io.read_jsonl(corpus))
    blocks, segments = corpus_mod.build_blocks(corpus, tok, s["train"]["block_size"], s["seed"], "continual")
    summary = corpus_mod.corpus_summary(blocks, s["train"]["batch_size"], s["train"]["grad_accum"], paragraphs)
    summary["provenance"] = io.provenance("train_corpus", s["seed"], s, "tokenizers", "transformers")
    corpus_mod.save_blocks(blocks, segments, summary, blocks_out, summary_out)
    return summary


def is_continual_state(path: Path) -> bool:
    return (path / "trainer_state.json").is_file() and (path / STATE_INFO).is_file()


def train_continual(settings: dict, execution: dict, start: str, blocks: str, summary: str, tokenizer_dir: str,
                    scratch: str, out: str, until_epoch: int | None = None, until_step: int | None = None,
                    threads: int | None = None, tensorboard_dir: str | None = None) -> dict:
    """Continue from `start` (start model or a continual state) to the end of epoch `until_epoch` or
    to step `until_step`; output: the resumable state there (`export_epoch` makes its checkpoint)."""
    if (until_epoch is None) == (until_step is None):
        raise TrainingError("give exactly one of until_epoch / until_step")
    s = phase_settings(settings, "continual")
    start = Path(start)
    corpus_info = corpus_mod.load_summary(summary)
    spe = corpus_info["steps_per_epoch"]
    expected = corpus_mod.steps_per_epoch(corpus_info["blocks"], s["train"]["batch_size"], s["train"]["grad_accum"])
    if spe != expected:
        raise TrainingError(f"{summary} was made for other batch settings ({spe} steps per epoch, expected {expected})")
    resume_from = start if is_continual_state(start) else None
    done = json.loads((start / "trainer_state.json").read_text())["global_step"] if resume_from else 0
    target = until_epoch * spe if until_epoch is not None else until_step
    if target <= done:
        raise TrainingError(f"{start} is already at step {done}; nothing to train up to step {target}")
    tok = _tokenizer(tokenizer_dir, None)
    model = load_model(start, fused_gelu=False)  # trains with the modules it was saved with
    check_vocabulary(model, tok)
    dataset = corpus_mod.BlockDataset(*corpus_mod.load_blocks(blocks), seed=s["seed"])
    final, trainer = run_training(model, dataset, s, execution, Path(scratch), s["train"]["continual"]["lr"],
                                  epochs=until_epoch, max_steps=until_step, resume_from=resume_from,
                                  inputs=[start, blocks, summary], threads=threads,
                                  tensorboard_dir=tensorboard_dir and Path(tensorboard_dir))
    info = state_info(trainer, "continual", spe, s)
    if not is_main_process():  # distributed training: only RANK 0 writes
        return info
    publish(final, Path(out), info, Path(scratch))
    log.info("continual: step %d (epoch %.3f), %d tokens seen", info["global_step"], info["epoch"], info["tokens_seen"])
    return info


def export_epoch(name: str, state: str, tokenizer_dir: str, out: str) -> dict:
    info = json.loads((Path(state) / STATE_INFO).read_text(encoding="utf-8"))
    return export_checkpoint(name, state, tokenizer_dir, out, info)


def export_start(name: str, source: str, init: bool, summary: str, tokenizer_dir: str, out: str, seed: int) -> dict:
    spe = corpus_mod.load_summary(summary)["steps_per_epoch"]
    return export_checkpoint(name, source, tokenizer_dir, out, start_info(source, init, spe, seed))


def train_stream(settings: dict, execution: dict, study: str, start: str, blocks: str, tokenizer_dir: str,
                 scratch: str, out: str, threads: int | None = None, tensorboard_dir: str | None = None) -> list[dict]:
    """One pass over `blocks` in their order from the checkpoint `start`, with a fresh optimiser
    (settings: kcircuits.train.schedule.stream_settings). Output: a folder of model-only checkpoints,
    one per step of the study's schedule (the last step always), each with checkpoint.json
    (phase = the study; epoch = the share of the stream trained). Returns their records."""
    from ..vocabulary import step_name

    t = settings["train"]
    blocks_array, _ = corpus_mod.load_blocks(blocks)
    total = corpus_mod.steps_per_epoch(len(blocks_array), t["batch_size"], t["grad_accum"])
    steps = stream_steps(total, **settings["stream"]["checkpoints"])
    tok = _tokenizer(tokenizer_dir, None)
    model = load_model(start, fused_gelu=False)
    check_vocabulary(model, tok)
    info = {"phase": study, "steps_per_epoch": total, "seed": settings["seed"],
            "versions": io.package_versions("torch", "transformers", "accelerate", "safetensors")}
    folder = Path(scratch) / "snapshots"
    _, trainer = run_training(model, corpus_mod.BlockDataset(blocks_array), settings, execution, Path(scratch),
                              settings["stream"]["lr"], epochs=1, inputs=[start, blocks], threads=threads,
                              tensorboard_dir=tensorboard_dir and Path(tensorboard_dir), ordered=True,
                              callbacks=[snapshots(steps, folder, info)])
    if not is_main_process():  # distributed training: only RANK 0 writes
        return []
    records = []
    with io.atomic_path(out, is_dir=True) as tmp:
        for step in steps:
            snap = folder / step_name(step)
            record = json.loads((snap / SNAPSHOT_INFO).read_text(encoding="utf-8"))
            records.append(export_checkpoint(step_name(step), snap, tokenizer_dir, tmp / step_name(step),
                                             {**record, "epoch": step / total}))
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("%s stream: %d steps, checkpoints at %s", study, trainer.state.global_step, steps)
    return records
