"""Run the Hugging Face Trainer so that every job can be killed and resumed without losing work.

A job trains up to a target (an epoch count or a step) and leaves one resumable Trainer checkpoint
(weights, optimizer, scheduler, RNG, trainer_state.json) as its output. While it runs, it saves
resumable checkpoints into a scratch folder *outside* its declared outputs -- Snakemake deletes a
job's outputs before rerunning it, never the scratch -- and a rerun resumes from the newest
complete one. A scratch folder carries a fingerprint of the job (settings, target, starting
point); a stale one from other settings is wiped rather than resumed.

Continual pre-training is one job per epoch, each resuming from the previous epoch's state. The
Trainer's sampler reseeds from (seed + epoch), the RNG state is restored, the scheduler is constant
and the optimizer state is carried over, so the chain reproduces one continuous run.

Several GPUs (kcircuits.train.launch): every torchrun process runs the same job; train.batch_size is
the global batch (each process takes its share), the main process readies the scratch folder and
alone writes the job's outputs.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

from .. import io
from ..checkpoint import resolve_device
from .corpus import steps_per_epoch
from .launch import per_device_batch_size, threads_per_process

log = logging.getLogger("kcircuits.train")

STATE_INFO = "kcircuits_state.json"  # written beside trainer_state.json in every continual state
SNAPSHOT_INFO = "snapshot.json"  # written beside the weights of every stream-run snapshot
FINGERPRINT = "job.json"
LOGGING_STEPS = 10  # constant: a resumed state's logging interval must match the Trainer's args


def trainer_kwargs(settings: dict, execution: dict, output_dir: str | Path, lr: float, *,
                   epochs: int | None = None, max_steps: int | None = None, ordered: bool = False) -> dict:
    """TrainingArguments keywords: AdamW (config betas, epsilon, weight decay), clipping, constant LR;
    ordered: the blocks in dataset order (a stream), not shuffled each epoch."""
    t = settings["train"]
    device = resolve_device(execution.get("device") or "auto", f"compute.{execution.get('kind', 'train')}.device")
    report_to = "tensorboard" if importlib.util.find_spec("tensorboard") else "none"
    return dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=per_device_batch_size(t["batch_size"]),  # batch_size is global (launch.py)
        gradient_accumulation_steps=t["grad_accum"],
        learning_rate=lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        weight_decay=t["weight_decay"],
        adam_beta1=t["adam_betas"][0],
        adam_beta2=t["adam_betas"][1],
        adam_epsilon=t["adam_epsilon"],
        max_grad_norm=t["max_grad_norm"],
        num_train_epochs=epochs if epochs is not None else 1,
        max_steps=max_steps if max_steps is not None else -1,
        seed=settings["seed"],
        data_seed=settings["seed"],
        train_sampling_strategy="sequential" if ordered else "random",
        save_strategy="no",  # ResumableSaves decides when to save
        save_total_limit=1,
        logging_strategy="steps",
        logging_steps=LOGGING_STEPS,
        include_num_input_tokens_seen="all",  # blocks have no padding: every position counts
        report_to=report_to,
        disable_tqdm=False,
        use_cpu=device == "cpu",
        deepspeed=execution.get("deepspeed") or None,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def resumable_saves(save_steps: int):
    """Save a resumable checkpoint every `save_steps` steps (0: never mid-epoch), at every epoch end
    and at the last step -- each exactly once."""
    from transformers import TrainerCallback

    class ResumableSaves(TrainerCallback):
        def __init__(self):
            self.last_saved = -1

        def on_step_end(self, args, state, control, **kwargs):
            if (save_steps and state.global_step % save_steps == 0) or state.global_step >= state.max_steps:
                control.should_save = True
            return control

        def on_epoch_end(self, args, state, control, **kwargs):
            if state.global_step != self.last_saved:
                control.should_save = True
            return control

        def on_save(self, args, state, control, **kwargs):
            self.last_saved = state.global_step
            log.info("saved resumable state at step %d", state.global_step)
            return control

    return ResumableSaves()


def snapshots(steps: list[int], folder: Path, info: dict):
    """Save a model-only snapshot (safetensors, + snapshot.json: step and tokens seen) after each of
    `steps`, into folder/step-SSSSSS, atomically, on the main process. They sit in the job's scratch
    folder, so a killed job keeps the ones it made."""
    from transformers import TrainerCallback

    from ..vocabulary import step_name

    wanted = set(steps)

    class Snapshots(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step in wanted and state.is_world_process_zero:
                with io.atomic_path(folder / step_name(state.global_step), is_dir=True) as tmp:
                    model.save_pretrained(str(tmp))
                    io.write_json({**info, "global_step": state.global_step,
                                   "tokens_seen": int(state.num_input_tokens_seen)}, tmp / SNAPSHOT_INFO)
            return control

    return Snapshots()


def epoch_data(dataset, steps_per_epoch: int):
    """Point the dataset at the current epoch's block contents at every epoch start (also when a
    job resumes mid-epoch: the epoch is read from the global step, not counted in this process)."""
    from transformers import TrainerCallback

    class EpochData(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            dataset.set_epoch(state.global_step // steps_per_epoch)
            return control

    return EpochData()


def job_fingerprint(settings: dict, target: dict, inputs: list[str | Path]) -> dict:
    """What a scratch folder's checkpoints were computed from. Input files (a folder: its files) are
    identified by size and modification time, which a rerun of the upstream job changes."""
    files = []
    for path in map(Path, inputs):
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                files.append([str(f), f.stat().st_size, f.stat().st_mtime_ns])
    blob = json.dumps({"settings": settings, "target": target, "inputs": files}, sort_keys=True)
    return {"sha256": hashlib.sha256(blob.encode()).hexdigest(), "target": target}


def complete_checkpoints(scratch: Path) -> list[Path]:
    """Scratch checkpoints whose trainer_state.json (written last) is readable, oldest first."""
    found = []
    for path in scratch.glob("checkpoint-*"):
        try:
            json.loads((path / "trainer_state.json").read_text())
            found.append((int(path.name.split("-")[1]), path))
        except (OSError, ValueError):
            continue
    return [p for _, p in sorted(found)]


def prepare_scratch(scratch: Path, fingerprint: dict) -> Path | None:
    """Make the scratch folder ready; return the checkpoint to resume from, if a matching one exists."""
    marker = scratch / FINGERPRINT
    if scratch.exists():
        try:
            same = json.loads(marker.read_text())["sha256"] == fingerprint["sha256"]
        except (OSError, ValueError, KeyError):
            same = False
        if not same:
            log.info("scratch %s is from another job configuration: starting afresh", scratch)
            shutil.rmtree(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    io.write_json(fingerprint, marker)
    done = complete_checkpoints(scratch)
    for path in scratch.glob("checkpoint-*"):
        if path not in done:
            shutil.rmtree(path)  # a save cut short by the kill
    return done[-1] if done else None


def run_training(model, dataset, settings: dict, execution: dict, scratch: Path, lr: float, *,
                 epochs: int | None = None, max_steps: int | None = None, resume_from: Path | None = None,
                 inputs: list[str | Path] = (), threads: int | None = None,
                 tensorboard_dir: Path | None = None, ordered: bool = False,
                 callbacks: list = (), trainer_class=None) -> tuple[Path, object]:
    """Train to `epochs` (total, counted from step 0 of this phase) or to `max_steps`; ordered: in
    the dataset's order (stream runs); callbacks: more Trainer callbacks (e.g. `snapshots`);
    trainer_class: a Trainer subclass with another loss (a study's, e.g. an inductive loss).

    `resume_from` is a previous job's state (continual chain); a scratch checkpoint of this job
    takes precedence if it was made from the same settings, target and `inputs` (the files the
    model and data came from). Returns the final resumable checkpoint folder (in scratch) and the
    Trainer.
    """
    import torch
    from transformers import Trainer, TrainingArguments

    threads = threads_per_process(threads)
    if threads:
        torch.set_num_threads(threads)
    target = {"epochs": epochs, "max_steps": max_steps, "lr": lr}
    fingerprint = job_fingerprint(settings, target, list(inputs))
    if tensorboard_dir is not None:  # read by the Trainer's TensorBoard callback, when tensorboard is installed
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(tensorboard_dir)
    # Under torchrun this joins the process group; the main process readies the scratch folder
    # (wiping a stale one) before the others look for a checkpoint to resume from.
    args = TrainingArguments(**trainer_kwargs(settings, execution, scratch, lr, epochs=epochs, max_steps=max_steps,
                                              ordered=ordered))
    with args.main_process_first(local=False, desc="scratch folder"):
        if args.process_index == 0:
            scratch_resume = prepare_scratch(scratch, fingerprint)
        else:
            done = complete_checkpoints(scratch)
            scratch_resume = done[-1] if done else None
    resume = scratch_resume or resume_from
    if scratch_resume is not None:
        log.info("resuming this job from its scratch checkpoint %s", scratch_resume)
    elif resume_from is not None:
        log.info("continuing from state %s", resume_from)
    spe = steps_per_epoch(len(dataset), args.per_device_train_batch_size * args.world_size,  # the global batch
                          args.gradient_accumulation_steps)
    callbacks = [resumable_saves(int(execution.get("save_steps") or 0)), *callbacks]
    if hasattr(dataset, "set_epoch"):
        callbacks.append(epoch_data(dataset, spe))
    trainer = (trainer_class or Trainer)(model=model, args=args, train_dataset=dataset, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    trainer.accelerator.wait_for_everyone()  # every rank's last save is on disk before RANK 0 publishes it
    final = scratch / f"checkpoint-{trainer.state.global_step}"
    if trainer.is_world_process_zero() and not (final / "trainer_state.json").is_file():
        raise RuntimeError(f"training ended at step {trainer.state.global_step} without a saved state in {final}")
    return final, trainer


def state_info(trainer, phase: str, spe: int, settings: dict) -> dict:
    """What a saved state is: progress counters, corpus shape and software, read by exports."""
    state = trainer.state
    return {
        "phase": phase,
        "epoch": state.global_step / spe,
        "global_step": state.global_step,
        "steps_per_epoch": spe,
        "tokens_seen": int(state.num_input_tokens_seen),
        "seed": settings["seed"],
        "versions": io.package_versions("torch", "transformers", "accelerate", "safetensors"),
    }


def publish(checkpoint: Path, out: Path, info: dict | None, scratch: Path) -> None:
    """Move the final checkpoint onto the job's output in one rename, then drop the scratch folder."""
    if info is not None:
        io.write_json(info, checkpoint / STATE_INFO)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(checkpoint, out)
    shutil.rmtree(scratch, ignore_errors=True)

