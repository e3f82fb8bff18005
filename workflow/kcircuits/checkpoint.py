"""Model folders and exported checkpoints: what they hold, their weights' checksums, loading.

A model folder is a local Hugging Face folder: config.json and safetensors weights (model.safetensors,
or shards beside model.safetensors.index.json). An exported checkpoint (kcircuits.train.export) adds
checkpoint.json: name, phase, epoch, global_step, steps_per_epoch, tokens_seen, seed, versions and
`weights_sha256` (weights file name -> sha256), which `load_model` verifies, so a weights file that
changed or was damaged after export is caught by name. Checkpoints exported before checksums load
with a warning.

Light at import (the Snakefile validates `model.init` through it): torch and transformers are
imported by `load_model` only, and transformers not at all where only CircuitModel reads the model
(`hf_forward=False`, kcircuits.circuits.light).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger("kcircuits.checkpoint")

CHECKPOINT_INFO = "checkpoint.json"
CHECKSUMS = "weights_sha256"  # checkpoint.json key: weights file name -> sha256 hex digest
WEIGHTS = "*.safetensors"
REEXPORT = "delete the checkpoint folder and rerun Snakemake to re-export it"
METADATA = {"seed": int, "checkpoint": str, "phase": str, "epoch": float, "global_step": int, "tokens_seen": int}
"""What every per-checkpoint table records of its checkpoint (column -> type), from checkpoint.json
(`checkpoint` is its `name`)."""


class CheckpointError(ValueError):
    """A model folder that cannot be used as it is; the message names the file and what to do."""


def weight_files(folder: str | Path) -> list[Path]:
    return sorted(Path(folder).glob(WEIGHTS))


def read_model_config(folder: str | Path) -> dict:
    """config.json of a model folder, after checking that the folder holds config.json and weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder")
    path = folder / "config.json"
    if not path.is_file() or not weight_files(folder):
        raise CheckpointError(f"{folder}: not a Hugging Face model folder (needs config.json and "
                              f".safetensors weights; only safetensors checkpoints are loaded)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from err


def context_length(config: dict) -> int | None:
    """Positions a model can attend over, from its config.json (GPT-2 / NeoX / Llama spelling)."""
    for key in ("n_positions", "max_position_embeddings"):
        if key in config:
            return int(config[key])
    return None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(folder: str | Path) -> dict[str, str]:
    """Weights file name -> sha256, what checkpoint.json records at export."""
    return {p.name: file_sha256(p) for p in weight_files(folder)}


def read_checkpoint_info(folder: str | Path) -> dict:
    path = Path(folder) / CHECKPOINT_INFO
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable ({err}); {REEXPORT}") from err


def verify_weights(folder: str | Path) -> None:
    """Compare the weights with checkpoint.json's checksums (a folder without checkpoint.json, such as
    model.init or the base model, has none to compare)."""
    folder = Path(folder)
    if not (folder / CHECKPOINT_INFO).is_file():
        return
    recorded = read_checkpoint_info(folder).get(CHECKSUMS)
    if recorded is None:
        log.warning("%s: no %s in %s (exported before checksums); weights not verified", folder, CHECKSUMS,
                    CHECKPOINT_INFO)
        return
    present = {p.name for p in weight_files(folder)}
    for name in sorted(present ^ set(recorded)):
        what = "is missing" if name in recorded else f"is not recorded in {CHECKPOINT_INFO}"
        raise CheckpointError(f"{folder / name}: weights file {what}; {REEXPORT}")
    for name, expected in sorted(recorded.items()):
        if file_sha256(folder / name) != expected:
            raise CheckpointError(f"{folder / name}: sha256 differs from the one {CHECKPOINT_INFO} recorded at "
                                  f"export (the file changed or is damaged); {REEXPORT}")


def checkpoint_metadata(folder: str | Path) -> dict:
    """Training seed, name and training progress of a checkpoint (METADATA), from its checkpoint.json."""
    meta = read_checkpoint_info(folder)
    missing = {"seed", "name", "phase", "epoch", "global_step", "tokens_seen"} - set(meta)
    if missing:
        raise CheckpointError(f"{Path(folder) / CHECKPOINT_INFO}: missing {sorted(missing)}; {REEXPORT}")
    return {col: kind(meta["name" if col == "checkpoint" else col]) for col, kind in METADATA.items()}


def _check_headers(files: list[Path]) -> None:
    """Open each weights file's header: a truncated or foreign file fails here, by name."""
    from safetensors import SafetensorError, safe_open

    for path in files:
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: unreadable safetensors weights ({err}); "
                                  f"truncated or damaged? {REEXPORT}") from err


class DeviceError(CheckpointError):
    """The device a job asks for is not there (the CLI reports it in one line, like a bad checkpoint)."""


def resolve_device(device: str, key: str = "--device") -> str:
    """auto | cpu | cuda -> the torch device a job computes on: auto = cuda when torch sees a GPU in
    this job (CUDA_VISIBLE_DEVICES, a SLURM allocation), else cpu. `key` names the setting in errors."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{key} is 'cuda' but torch sees no CUDA device in this job")
    if device not in ("cpu", "cuda"):
        raise DeviceError(f"{key}: unknown device {device!r} (auto, cpu or cuda)")
    return device


def load_model(path: str | Path, device: str = "cpu", fused_gelu: bool = True, hf_forward: bool = True):
    """A causal LM from a local model folder, checked and in eval mode on `device` (auto | cpu | cuda,
    resolve_device; never unpickles, never reaches a hub).

    fused_gelu: swap transformers' Python tanh-GELU for torch's fused kernel (`fuse_tanh_gelu`), as
    every analysis does; training passes False and keeps the modules it was trained with.
    hf_forward: False where only CircuitModel reads the model (every analysis of its internals): the
    modules it reads are built from config.json and the weights by kcircuits.circuits.light, with
    bit-identical results and without importing transformers' model classes (about 3 s a process);
    the model then has no forward of its own. A folder that module cannot build exactly as
    transformers would is loaded through transformers (logged).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = resolve_device(device)  # before reading anything: a job on the wrong node fails at once
    path = Path(path)
    config = read_model_config(path)
    _check_headers(weight_files(path))
    verify_weights(path)
    model = None if hf_forward else _analysis_modules(path, config, fused_gelu)
    if model is None:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, use_safetensors=True)
        model = fuse_tanh_gelu(model) if fused_gelu else model
    return model.to(device).eval()


def _analysis_modules(path: Path, config: dict, fused_gelu: bool):
    """CircuitModel's modules of a folder without transformers (circuits.light), or None where that
    module cannot build them exactly."""
    from .circuits.light import Unsupported, analysis_model

    if not fused_gelu:
        raise ValueError("hf_forward=False builds analysis modules, which use the fused tanh-GELU")
    try:
        return analysis_model(config, weight_files(path))
    except Unsupported as why:
        log.info("%s: loaded through transformers (%s)", path, why)
        return None


def fuse_tanh_gelu(model):
    """Swap transformers' Python tanh-GELU ("gelu_new", GPT-2's activation) for torch's fused kernel
    of the same formula: identical up to float rounding, and a sixth of a CPU evaluation faster."""
    import torch
    from transformers.activations import NewGELUActivation

    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is NewGELUActivation:
                setattr(parent, name, torch.nn.GELU(approximate="tanh"))
    return model
