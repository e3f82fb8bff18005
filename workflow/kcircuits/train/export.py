"""Exported checkpoints: model-only Hugging Face folders that every downstream analysis loads.

`results/{run}/checkpoints/{name}/` holds config.json, the safetensors weights, the generation
config when there is one, the tokenizer files (model_max_length set to the model's context), and
checkpoint.json: name, phase, epoch (float progress in continual epochs), global_step,
steps_per_epoch, tokens_seen (continual tokens, padding excluded), seed, software versions and the
sha256 of each weights file (verified on load: kcircuits.checkpoint).

Exporting is plain file copying -- no torch -- so the many small export jobs cost next to nothing.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import io
from ..checkpoint import CHECKPOINT_INFO, CHECKSUMS, WEIGHTS, context_length, read_model_config, weights_sha256

MODEL_FILE_PATTERNS = ("config.json", "generation_config.json", WEIGHTS, "model.safetensors.index.json")
BASE_INFO = "training.json"  # written by the base phase beside its model


def model_files(source: Path) -> list[Path]:
    read_model_config(source)  # config.json and weights are there
    return sorted({p for pattern in MODEL_FILE_PATTERNS for p in source.glob(pattern)})


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
    with io.atomic_path(out, is_dir=True) as tmp:
        for path in model_files(source):
            shutil.copy2(path, tmp / path.name)
        copy_tokenizer(Path(tokenizer_dir), tmp, context_length(read_model_config(tmp)))
        record = {"name": name, **info, CHECKSUMS: weights_sha256(tmp)}  # of the copies written
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
