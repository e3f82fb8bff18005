"""Plain helpers and constants shared by the test modules (fixtures live in conftest.py).
Test modules import from here, never from each other or from conftest."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported by the helpers that need it, not at collection
    import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"
SMOKE = REPO / "tests" / "config" / "smoke.yaml"
TINY_DATA_TARGETS = ("results/tiny/data/circuit_pairs.parquet", "results/tiny/data/qa_report.json")
V = 61  # vocabulary of the random models
YEARS = {"min": 1940, "max": 2005}
# A small generated world (kcircuits.data.entities.generate_entities settings): 30 entities, 10 background.
SMALL_WORLD = {"entities": {"n": 30, "new_fraction": 0.5, "background": 10, "frequency_lambda": 0.4,
                            "frequency_groups": {"low": {"min": 1, "max": 1}, "medium": {"min": 2, "max": 5},
                                                 "high": {"min": 6}},
                            "birth_years": YEARS}}
# A model small enough that a few epochs of the tiny world train in seconds.
MICRO = {"model": {"n_layer": 1, "n_embd": 32, "n_head": 2, "n_positions": 64},
         "train": {"block_size": 64, "batch_size": 8, "continual": {"epochs": 2, "lr": 3.0e-3}}}

_snakemake_allowed = True  # conftest sets it per test: only tests marked `slow` may run Snakemake


def allow_snakemake(allowed: bool) -> None:
    global _snakemake_allowed
    _snakemake_allowed = allowed


# ---- Snakemake -----------------------------------------------------------------------------------------
def snakemake_command(workdir: Path, *args: str, configfiles=(TINY,), cores: int | None = 2,
                      lock: bool = False) -> list[str]:
    """The command line of snakemake(); lock=True: without --nolock, as users run it."""
    if not _snakemake_allowed:
        raise AssertionError("this test runs Snakemake: mark it @pytest.mark.slow (or its module: pytestmark)")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           *(["--cores", str(cores)] if cores else []), *([] if lock else ["--nolock"]), *args]
    if configfiles:  # last: --configfile takes every following word as a file
        cmd += ["--configfile", *map(str, configfiles)]
    return cmd


def snakemake(workdir: Path, *args: str, configfiles=(TINY,), check: bool = True,
              cores: int | None = 2, lock: bool = False) -> subprocess.CompletedProcess:
    """Run the project's Snakefile in `workdir` (outputs land there); returns the finished process.
    cores=None: no --cores, as users type `snakemake --report` or `snakemake -n`. Tests share no
    working directory, so Snakemake's lock is off unless lock=True."""
    cmd = snakemake_command(workdir, *args, configfiles=configfiles, cores=cores, lock=lock)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess | str) -> dict[str, int]:
    """Rule -> job count from the first 'Job stats' table of a (dry) run's output, 'total' left out."""
    output = proc if isinstance(proc, str) else proc.stdout + proc.stderr
    counts = {}
    for line in output[output.index("Job stats:"):].splitlines()[3:]:  # title, header, rule
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total" or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def result_files(root: Path) -> dict[str, Path]:
    """Every result file under root but logs, benchmarks and Snakemake's markers, by relative path."""
    skip = {"logs", "benchmarks"}
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and not skip & set(p.relative_to(root).parts) and p.name != ".snakemake_timestamp"}


def without_timings(obj):
    """Training records minus wall-clock fields (train_runtime, *_per_second): the rest must agree."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if not re.search(r"runtime|per_second", k)}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


def assert_same_results(expected: Path, actual: Path) -> list[str]:
    """Two runs' results folders hold the same files with the same bytes (training records: the same
    but for wall-clock timings); returns the relative paths compared."""
    want, got = result_files(expected), result_files(actual)
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for rel, path in want.items():
        a, b = path.read_bytes(), got[rel].read_bytes()
        if path.name in ("training.json", "trainer_state.json"):
            assert without_timings(json.loads(a)) == without_timings(json.loads(b)), rel
        else:
            assert a == b, rel
    return sorted(want)


# ---- models ----------------------------------------------------------------------------------------------
def assert_figure_drawn_twice_alike(argv: list[str], tmp_path: Path) -> None:
    """`kcircuits` ARGV (a figure command without --pdf / --png) run twice: a PDF and a PNG of some
    size each time, byte-identical across the two runs."""
    from kcircuits.cli import main

    outputs = []
    for run in ("a", "b"):
        pdf, png = tmp_path / f"{run}.pdf", tmp_path / f"{run}.png"
        assert main([*argv, "--pdf", str(pdf), "--png", str(png)]) == 0
        outputs.append([pdf.read_bytes(), png.read_bytes()])
    pdf, png = outputs[0]
    assert pdf[:5] == b"%PDF-" and len(pdf) > 1000 and png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert outputs[0] == outputs[1]  # deterministic bytes


def micro_settings(**override) -> dict:
    """Training-stage settings of the default config with the MICRO model, deep-merged with `override`."""
    from kcircuits.config import deep_merge, load_config

    cfg = deep_merge(deep_merge(load_config([REPO / "config.yaml"]), MICRO), override)
    return {"seed": cfg["seed"], "model": cfg["model"], "train": cfg["train"]}


def random_model(family: str = "gpt2", layers: int = 2, heads: int = 4, d: int = 32, std: float = 0.15, seed: int = 0,
                 **extra):
    """A random causal LM (vocabulary V) with weights large enough that attention and MLPs are far from linear."""
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )
    torch.manual_seed(seed)
    ids = dict(vocab_size=V, bos_token_id=0, eos_token_id=0)
    if family == "gpt2":
        hf = GPT2LMHeadModel(GPT2Config(n_layer=layers, n_head=heads, n_embd=d, n_positions=32, **ids, **extra))
    elif family == "gpt_neox":
        hf = GPTNeoXForCausalLM(GPTNeoXConfig(num_hidden_layers=layers, num_attention_heads=heads, hidden_size=d,
                                              intermediate_size=2 * d, max_position_embeddings=32, **ids, **extra))
    else:
        hf = LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, num_attention_heads=heads, hidden_size=d,
                                          intermediate_size=2 * d, max_position_embeddings=32, **ids, **extra))
    for p in hf.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=std)
    return hf.eval()  # no dropout: tests compare against it directly


def random_checkpoint(folder: Path, tok, name: str, epoch: float, seed: int = 0, train_seed: int = 0,
                      layers: int = 1, n_positions: int = 128) -> Path:
    """A random GPT-2 for `tok` (weights from `seed`; 2 heads, width 32) exported by the training stage's own
    exporter to folder/name: model, tokenizer, and checkpoint.json recording `train_seed` and 10 steps an epoch."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from kcircuits.train.export import export_checkpoint

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), n_layer=layers, n_embd=32, n_head=2, n_positions=n_positions,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    step = round(10 * epoch)
    info = {"phase": "base" if epoch == 0 else "continual", "epoch": epoch, "global_step": step,
            "steps_per_epoch": 10, "tokens_seen": step * 2048, "seed": train_seed}
    with tempfile.TemporaryDirectory() as tmp:
        GPT2LMHeadModel(config).save_pretrained(Path(tmp) / "model", safe_serialization=True)
        tok.save_pretrained(Path(tmp) / "tokenizer")
        export_checkpoint(name, Path(tmp) / "model", Path(tmp) / "tokenizer", Path(folder) / name, info)
    return Path(folder) / name


def checkpoint_meta(seed: int, name: str, epoch: float, global_step: int, tokens_per_step: int = 100) -> dict:
    """The checkpoint columns a stage's table starts with (kcircuits.checkpoint.METADATA), for a made-up
    continual checkpoint."""
    from kcircuits.checkpoint import METADATA

    values = (seed, name, "continual", epoch, global_step, tokens_per_step * global_step)
    assert len(values) == len(METADATA)
    return dict(zip(METADATA, values))


# ---- Hugging Face reference points (MLP hidden activations) -------------------------------------------
def down_proj(hf, layer: int) -> torch.nn.Module:
    """The Hugging Face module whose input is the layer's MLP hidden activations."""
    family = hf.config.model_type
    if family == "gpt2":
        return hf.transformer.h[layer].mlp.c_proj
    if family == "gpt_neox":
        return hf.gpt_neox.layers[layer].mlp.dense_4h_to_h
    return hf.model.layers[layer].mlp.down_proj


def hf_with_last_hidden(hf, ids: torch.Tensor, layer: int, hidden: torch.Tensor) -> torch.Tensor:
    """The HF model's last-position logits [V] for one unpadded prompt ids [T], with layer's MLP
    hidden activations at the last position set to hidden [m] (a pre-hook on the down projection)."""
    def replace(module, args):
        x = args[0].clone()
        x[:, -1] = hidden
        return (x,)

    handle = down_proj(hf, layer).register_forward_pre_hook(replace)
    try:
        return hf(ids[None]).logits[0, -1]
    finally:
        handle.remove()
