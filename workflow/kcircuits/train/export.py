"""Exported checkpoints: model-only Hugging Face folders that every downstream analysis loads.

`results/{run}/checkpoints/{name}/` holds config.json, the safetensors weights, the generation
config when there is one, the tokenizer files (model_max_length set to the model's context), and
checkpoint.json: name, phase, epoch (float progress in continual epochs), global_step,
steps_per_epoch, tokens_seen (continual tokens, padding excluded), seed and software versions.

Exporting is plain file copying -- no torch -- so the many small export jobs cost next to nothing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import io

MODEL_FILE_PATTERNS = ("config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json")
CHECKPOINT_INFO = "checkpoint.json"
BASE_INFO = "training.json"  # written by the base phase beside its model


def model_files(source: Path) -> list[Path]:
    files = sorted({p for pattern in MODEL_FILE_PATTERNS for p in source.glob(pattern)})
    if not any(p.suffix == ".safetensors" for p in files) or not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source}: needs config.json and .safetensors weights")
    return files


def context_length(config: dict) -> int | None:
    for key in ("n_positions", "max_position_embeddings"):
        if key in config:
            return int(config[key])
    return None


def copy_tokenizer(tokenizer_dir: Path, out: Path, max_length: int | None) -> None:
    """Copy the tokenizer files, recording the model's context as model_max_length (so downstream
    tokenisation truncates or warns at the right length instead of at 1e30)."""
    for path in sorted(Path(tokenizer_dir).iterdir()):
        if path.is_file():
            shutil.copy2(path, out / path.name)
    config_path = out / "tokenizer_config.json"
    if max_length is not None and config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["model_max_length"] = max_length
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def export_checkpoint(name: str, source: str | Path, tokenizer_dir: str | Path, out: str | Path, info: dict) -> dict:
    """Write the model-only checkpoint folder `out` atomically; returns its checkpoint.json record."""
    source = Path(source)
    record = {"name": name, **info}
    with io.atomic_path(out, is_dir=True) as tmp:
        for path in model_files(source):
            shutil.copy2(path, tmp / path.name)
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
        copy_tokenizer(Path(tokenizer_dir), tmp, context_length(config))
        io.write_json(record, tmp / CHECKPOINT_INFO)
    return record


def start_info(source: str | Path, init: bool, steps_per_epoch: int, seed: int) -> dict:
    """checkpoint.json fields for epoch-000, the model continual pre-training starts from."""
    source = Path(source)
    base_path = source / BASE_INFO
    base = json.loads(base_path.read_text(encoding="utf-8")) if base_path.is_file() else None
    return {
        "phase": "init" if init else "base",
        "epoch": 0.0,
        "global_step": 0,
        "steps_per_epoch": steps_per_epoch,
        "tokens_seen": 0,
        "seed": seed,
        "source": str(source) if init else None,
        "base": {k: base[k] for k in ("epochs", "global_step", "tokens_seen")} if base else None,
        "versions": base["versions"] if base else io.package_versions(),
    }


def read_checkpoint_info(folder: str | Path) -> dict:
    return json.loads((Path(folder) / CHECKPOINT_INFO).read_text(encoding="utf-8"))


def progress_order(names: list[str], checkpoints_dir: str | Path) -> list[str]:
    """`names` sorted by the training progress recorded in each exported checkpoint.json."""
    def key(name):
        info = read_checkpoint_info(Path(checkpoints_dir) / name)
        return (info["global_step"], name.startswith("step-"))
    return sorted(names, key=key)
