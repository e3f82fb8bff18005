"""Multi-process (multi-GPU) training: how a training job starts its processes. Torch-free.

A training job asks for `compute.train.gpu` GPUs; the rule passes that number as `--processes`. With
more than one, or with a DeepSpeed config (DeepSpeed always wants a distributed launcher, even for one
GPU), the stage re-runs the same command under `python -m torch.distributed.run --standalone` (torchrun)
with one process per GPU on this node, and waits for it. Each process runs `python -m kcircuits`,
which takes the command from the environment (launched_argv). Inside, every process runs the same job:
the Trainer (accelerate) joins the process group from torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK), takes GPU LOCAL_RANK, and shards each global batch across the processes.

So that the numbers do not depend on the process count, `train.batch_size` stays the global batch
per optimiser step and accumulation micro-step: each process takes batch_size / WORLD_SIZE sequences
(`per_device_batch_size`), and steps per epoch equal the single-process count
(the b/W-sized batches of one shuffled order are dealt round-robin to the W processes:
ceil(ceil(n / (b/W)) / W) = ceil(n / b) steps; kcircuits.train.corpus.steps_per_epoch).
Only the main process (RANK 0) writes outputs; the others train and exit.

Inside a SLURM job (profiles/slurm): sbatch --gpus=N --cpus-per-task=T, the job step runs this one
command, torchrun starts N processes on the node, each with T / N CPU threads.
"""
from __future__ import annotations

import json
import os
import sys

LAUNCHER_ENV = "LOCAL_RANK"  # set by torchrun in every process it starts
ARGV_ENV = "KCIRCUITS_ARGV"  # the kcircuits command each process runs (JSON list)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """RANK 0 of a distributed launch, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def per_device_batch_size(batch_size: int, world: int | None = None) -> int:
    """Each process's share of the global batch; the global batch must split evenly."""
    world = world_size() if world is None else world
    if batch_size % world:
        raise ValueError(f"train.batch_size ({batch_size}) is not divisible by the {world} training processes; "
                         "it is the global batch, split across GPUs")
    return batch_size // world


def threads_per_process(threads: int | None) -> int | None:
    """The job's CPU threads shared among the processes on this node."""
    if not threads:
        return threads
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    return max(1, threads // local)


def needs_launcher(processes: int | None, deepspeed: str | None) -> bool:
    """True when this command must run under torch.distributed.run and is not already inside it."""
    if LAUNCHER_ENV in os.environ:
        return False
    return (processes or 1) > 1 or bool(deepspeed)


def launcher_command(argv: list[str], processes: int | None, python: str = sys.executable) -> tuple[list[str], dict]:
    """The same kcircuits command under torchrun, one process per GPU on this node: the command line
    and the environment to add. --standalone: a private rendezvous on a free local port, so several
    jobs can share a node. The kcircuits arguments travel in the environment: torchrun's parser
    would take abbreviations of its own options out of them (--start for --start-method).
    """
    n = max(1, processes or 1)
    cmd = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", "-m", "kcircuits"]
    return cmd, {ARGV_ENV: json.dumps(list(argv))}


def launched_argv() -> list[str] | None:
    """In a process of a torchrun launch (`python -m kcircuits` without arguments): the kcircuits
    command it runs; otherwise None."""
    text = os.environ.get(ARGV_ENV)
    return json.loads(text) if text else None
