"""Checkpoint names and which settings each training job depends on. Pure: no torch, no files.

The Snakefile imports this at parse time. Names:

- `epoch-000`: the model continual pre-training starts from (base model, or `model.init`);
- `epoch-EEE`: after continual epoch E, for every `train.checkpoints.every_epochs`-th epoch and the
  last one;
- `step-SSSSSS`: after optimiser step S of continual pre-training (`train.checkpoints.steps`).

Progress order needs steps per epoch, which depends on the tokenised corpus: `checkpoint_names(cfg)`
lists epoch checkpoints in order and then step checkpoints in ascending order;
`checkpoint_names(cfg, steps_per_epoch)` interleaves them by progress (steps_per_epoch is in
`results/{run}/train/continual/corpus.json`, and every exported `checkpoint.json` records it and its
float `epoch` progress, which is what plots should use).
"""
from __future__ import annotations

from ..vocabulary import epoch_name, in_training_order, parse_checkpoint, step_name

# Train keys every phase's numerics depend on. The rest of `train:` is either one phase's own
# section, the checkpoint schedule (adding checkpoints must not retrain anything), or execution
# detail (deepspeed, save_steps: how often a job saves, not what it computes; where it runs is
# compute.train.device).
SHARED_KEYS = ("block_size", "batch_size", "grad_accum", "weight_decay", "adam_betas", "adam_epsilon", "max_grad_norm")
EXECUTION_KEYS = ("deepspeed", "save_steps")


def checkpoint_epochs(cfg: dict) -> list[int]:
    """Continual epochs exported as checkpoints: every k-th, always the last, never 0 (see epoch-000)."""
    total = cfg["train"]["continual"]["epochs"]
    every = cfg["train"]["checkpoints"]["every_epochs"]
    return sorted({*range(every, total + 1, every), total})


def checkpoint_steps(cfg: dict) -> list[int]:
    return sorted(set(cfg["train"]["checkpoints"].get("steps") or []))


def checkpoint_names(cfg: dict, steps_per_epoch: int | None = None) -> list[str]:
    """Every checkpoint analysed downstream; by training progress when steps_per_epoch is given.

    Without it, epoch checkpoints come first (in order), then step checkpoints (ascending). With it,
    in training order (kcircuits.vocabulary.training_key): a step checkpoint that falls exactly on
    an epoch boundary sorts right after that epoch's checkpoint.
    """
    names = [epoch_name(e) for e in [0, *checkpoint_epochs(cfg)]] + [step_name(s) for s in checkpoint_steps(cfg)]
    if steps_per_epoch is None:
        return names
    return in_training_order((n, progress(n, steps_per_epoch), global_step(n, steps_per_epoch)) for n in names)


def progress(name: str, steps_per_epoch: int) -> float:
    """A checkpoint's position in continual pre-training, in epochs."""
    kind, n = parse_checkpoint(name)
    return float(n) if kind == "epoch" else n / steps_per_epoch


def global_step(name: str, steps_per_epoch: int) -> int:
    """The optimiser step of continual pre-training a checkpoint was taken at."""
    kind, n = parse_checkpoint(name)
    return n * steps_per_epoch if kind == "epoch" else n


def start_epoch_for_step(step: int, steps_per_epoch: int) -> int:
    """The latest continual epoch whose saved state lies strictly before `step` (0 = the start model)."""
    if step < 1:
        raise ValueError(f"step checkpoints start at step 1, got {step}")
    return (step - 1) // steps_per_epoch


def check_steps_within_training(cfg: dict, steps_per_epoch: int) -> None:
    total = cfg["train"]["continual"]["epochs"] * steps_per_epoch
    late = [s for s in checkpoint_steps(cfg) if s > total]
    if late:
        raise ValueError(f"train.checkpoints.steps: {late} lie beyond the last step of continual pre-training "
                         f"({cfg['train']['continual']['epochs']} epochs x {steps_per_epoch} steps = {total})")


def phase_settings(settings: dict, phase: str, seed: int | None = None) -> dict:
    """The slice of the train stage's settings a job of `phase` computes from (its rule params).

    phase: 'base' (base-world training), 'corpus' (continual blocks), 'continual' (epoch and step
    jobs). Continual jobs see neither `continual.epochs` nor the checkpoint schedule, so extending
    either only adds jobs; the base phase's settings reach them through their input files.
    seed: the training replicate (one of `train.seeds`): initialisation, packing and batch order.
    The list of seeds itself is in no job's params, so adding a seed only adds that seed's jobs.
    """
    train = settings["train"]
    settings = {**settings, "seed": settings["seed"] if seed is None else int(seed)}
    if phase == "base":
        picked = {k: train[k] for k in SHARED_KEYS} | {"base": train["base"]}
        return {"seed": settings["seed"], "model": settings["model"], "train": picked}
    if phase == "corpus":
        picked = {k: train[k] for k in ("block_size", "batch_size", "grad_accum")}
        return {"seed": settings["seed"], "train": picked}
    if phase == "continual":
        picked = {k: train[k] for k in SHARED_KEYS} | {"continual": {"lr": train["continual"]["lr"]}}
        return {"seed": settings["seed"], "model": settings["model"], "train": picked}
    raise ValueError(f"unknown training phase {phase!r}")


def execution_settings(cfg: dict, kind: str = "train") -> dict:
    """Where a job runs (compute.KIND.device; kind train, or stream for the knowledge-interplay runs)
    and how often it saves; passed outside the params so changing them retrains nothing."""
    return {"kind": kind, "device": cfg["compute"][kind]["device"], **{k: cfg["train"].get(k) for k in EXECUTION_KEYS}}


def stream_steps(total: int, gaps: list[int], every: int) -> list[int]:
    """Checkpoint steps of a stream run (knowledge order, forgetting): dense early, as the original
    study's forgetting callback -- after gaps of gaps[0], gaps[1], ... steps, then every `every`
    steps, and always the last step. gaps [1, 2, 4, 8, 16], every 16: 1, 3, 7, 15, 31, 47, 63, ..."""
    if total < 1:
        raise ValueError(f"a stream run needs at least one step, got {total}")
    steps, step = [], 0
    for gap in gaps:
        step += gap
        steps.append(step)
    while every and step + every < total:
        step += every
        steps.append(step)
    return sorted({s for s in steps if s < total} | {total})


def stream_settings(settings: dict, study: str, seed: int) -> dict:
    """A stream run's training settings (its rule params): the model, the shared training keys, and
    the study's learning rate and checkpoint schedule. settings: the stage settings of `study`
    (kcircuits.config.stage_sections) with the train section."""
    section = settings[study]
    picked = {k: settings["train"][k] for k in SHARED_KEYS}
    stream = {"lr": section["lr"], "checkpoints": section["checkpoints"]}
    return {"seed": int(seed), "model": settings["model"], "train": picked, "stream": stream}
