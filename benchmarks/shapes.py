"""What the benchmarks share: the model shapes they time, a random GPT-2 of one, wall time on a device
(a CUDA clock waits for the kernels it launched) and peak memory. Imported by the scripts beside it
(`python benchmarks/NAME.py` puts this folder on sys.path)."""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))  # kcircuits, also uninstalled

import torch  # noqa: E402

SHAPES = {
    "tiny": dict(n_layer=4, n_embd=128, n_head=4),
    "gpt2-small": dict(n_layer=12, n_embd=768, n_head=12),  # n_inner None: 4 * 768 = 3072 MLP neurons
}
VOCAB = 8192


def build(shape: str, device: str = "cpu"):
    """A randomly initialised GPT-2 of `shape` (vocabulary VOCAB, seed 0), in eval mode on `device`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=128, bos_token_id=0, eos_token_id=0, **SHAPES[shape])
    return GPT2LMHeadModel(cfg).to(device).eval()


def timed(fn, device: str = "cpu"):
    """(seconds, fn()) with the device's queue drained before and after."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def peak_memory_mb(device: str) -> float:
    """Peak memory of this process: CUDA memory allocated by torch, or the resident set on the CPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
