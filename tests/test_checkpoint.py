"""Checkpoint folders: checksums recorded at export and verified on load; damage is named in one line."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch

from kcircuits.checkpoint import (
    CHECKSUMS,
    METADATA,
    CheckpointError,
    checkpoint_metadata,
    load_model,
    read_model_config,
)
from kcircuits.train.export import export_checkpoint

INFO = {"phase": "continual", "epoch": 1.0, "global_step": 10, "steps_per_epoch": 10, "tokens_seen": 2048, "seed": 3}


@pytest.fixture()
def exported(tmp_path) -> Path:
    """A tiny random GPT-2 exported by the training stage's exporter (empty tokenizer folder)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=50, n_layer=1, n_embd=16, n_head=2, n_positions=32,
                               bos_token_id=0, eos_token_id=0)).save_pretrained(tmp_path / "saved")
    (tmp_path / "tok").mkdir()
    export_checkpoint("epoch-001", tmp_path / "saved", tmp_path / "tok", tmp_path / "epoch-001", INFO)
    return tmp_path / "epoch-001"


def _one_line_naming(err: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "rerun Snakemake" in message
    for word in words:
        assert word in message


def test_export_records_the_weights_sha256_and_load_verifies_it(exported):
    info = json.loads((exported / "checkpoint.json").read_text())
    weights = (exported / "model.safetensors").read_bytes()
    assert info[CHECKSUMS] == {"model.safetensors": hashlib.sha256(weights).hexdigest()}
    model = load_model(exported)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert type(model.transformer.h[0].mlp.act) is torch.nn.GELU  # fused tanh-GELU for analyses
    assert type(load_model(exported, fused_gelu=False).transformer.h[0].mlp.act) is not torch.nn.GELU


def test_checkpoint_metadata_gains_no_column(exported):
    """Every per-checkpoint parquet table gets these as columns: the checksum must not become one."""
    meta = checkpoint_metadata(exported)
    assert list(meta) == ["seed", "checkpoint", "phase", "epoch", "global_step", "tokens_seen"] == list(METADATA)
    assert meta == {"seed": 3, "checkpoint": "epoch-001", "phase": "continual", "epoch": 1.0, "global_step": 10,
                    "tokens_seen": 2048}


def test_a_flipped_byte_is_caught_by_the_checksum(exported):
    path = exported / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the last tensor: the file still parses
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_model(exported)
    _one_line_naming(err, path, "sha256")


@pytest.mark.parametrize("keep", [4, 20, 0.5])
def test_a_truncated_file_is_named_with_what_to_do(exported, keep):
    path = exported / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(CheckpointError) as err:
        load_model(exported)
    _one_line_naming(err, path, "truncated")


def test_a_truncated_file_without_checksums_is_named_too(exported):
    """model.init and the base model have no checkpoint.json: the load error still names the file."""
    (exported / "checkpoint.json").unlink()
    path = exported / "model.safetensors"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError) as err:
        load_model(exported)
    _one_line_naming(err, path, "invalid header length")


def test_a_checkpoint_exported_before_checksums_loads_with_a_warning(exported, caplog):
    info = json.loads((exported / "checkpoint.json").read_text())
    del info[CHECKSUMS]
    (exported / "checkpoint.json").write_text(json.dumps(info))
    with caplog.at_level(logging.WARNING, logger="kcircuits.checkpoint"):
        load_model(exported)
    assert f"no {CHECKSUMS}" in caplog.text and "not verified" in caplog.text


def test_weights_files_must_match_the_record(exported):
    (exported / "model.safetensors").rename(exported / "model-00001-of-00001.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_model(exported)
    _one_line_naming(err, exported / "model-00001-of-00001.safetensors", "not recorded")


def test_a_folder_without_a_model_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such folder"):
        read_model_config(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"not a Hugging Face model folder \(needs config.json and .safetensors"):
        load_model(tmp_path)


def test_bad_checkpoint_json_is_named(exported):
    (exported / "checkpoint.json").write_text('{"name": "epoch-001"}')
    with pytest.raises(CheckpointError) as err:
        checkpoint_metadata(exported)
    _one_line_naming(err, exported / "checkpoint.json", "missing ['epoch', 'global_step'")


def test_the_cli_reports_an_unusable_model_folder_in_one_line(tmp_path, capsys):
    from kcircuits.cli import main

    (tmp_path / "summary.json").write_text('{"steps_per_epoch": 10}')
    (tmp_path / "start").mkdir()
    code = main(["export-checkpoint", "--settings", '{"seed": 0}', "--name", "epoch-000", "--init",
                 "--source", str(tmp_path / "start"), "--summary", str(tmp_path / "summary.json"),
                 "--tokenizer", str(tmp_path), "--out", str(tmp_path / "epoch-000")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(f"kcircuits: {tmp_path / 'start'}: not a Hugging Face model folder")
    assert not (tmp_path / "epoch-000").exists()
