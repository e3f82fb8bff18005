"""EAP-IG speed against its floor, measured in one run on the same model and batch.

The floor is what any EAP-IG must spend: (m + 2) forward passes (clean, corrupted, m interpolation
points) and m backward passes of the Hugging Face model itself, without weight gradients and with
logits only at the last position. The goal is EAP-IG <= 1.3x the floor. Timings are the minimum of
interleaved repeats (the machine is shared), one thread by default.

    python benchmarks/eap_ig.py            # tiny (4 layers, d=128) and GPT-2-small-shaped (vocab 8k)
    python benchmarks/eap_ig.py --quick    # fewer pairs and repeats for the GPT-2-small shape
    python benchmarks/eap_ig.py --memory   # also: peak memory at m = 2 vs m = 20 (must not grow)
    python benchmarks/eap_ig.py --device cuda [--dtype bfloat16]   # on a GPU: pairs/s, peak memory

For scale, a widely used reference implementation took ~3.3 s for 64 pairs on the tiny shape and
~200 s on the GPT-2-small shape on this machine (one thread, weights frozen).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from shapes import SHAPES, VOCAB, build, peak_memory_mb, timed  # noqa: E402

from kcircuits.circuits.attribute import PairBatch, attribute  # noqa: E402
from kcircuits.circuits.metrics import logit_difference  # noqa: E402
from kcircuits.circuits.model import CircuitModel  # noqa: E402


def make_batch(n_pairs: int, seq_len: int, device: str = "cpu") -> PairBatch:
    """Pairs that differ in a 2-token 'subject', like the circuit pairs (same length, other labels),
    on `device`."""
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, VOCAB, (n_pairs, seq_len), generator=g)
    corrupted = clean.clone()
    corrupted[:, :2] = torch.randint(0, VOCAB, (n_pairs, 2), generator=g)
    labels = torch.randint(0, VOCAB, (2, n_pairs), generator=g)
    batch = clean, corrupted, torch.full((n_pairs,), seq_len - 1), labels[0], labels[1]
    return PairBatch(*(t.to(device) for t in batch))


def floor_pass(hf, batch: PairBatch, steps: int) -> None:
    """(m + 2) forward and m backward passes of the model itself: the least EAP-IG can cost."""
    for p in hf.parameters():
        p.requires_grad_(False)
    emb = hf.get_input_embeddings()
    with torch.no_grad():
        hf(input_ids=batch.clean_ids, logits_to_keep=1)
        hf(input_ids=batch.corrupted_ids, logits_to_keep=1)
        clean, corrupted = emb(batch.clean_ids), emb(batch.corrupted_ids)
    for k in range(1, steps + 1):
        x = (corrupted + k / steps * (clean - corrupted)).requires_grad_(True)
        logits = hf(inputs_embeds=x, logits_to_keep=1).logits[:, -1]
        logit_difference(logits, batch.clean_label, batch.corrupted_label).sum().backward(inputs=[x])


def bench(shape: str, n_pairs: int, seq_len: int, steps: int, repeats: int, device: str = "cpu",
          dtype: str = "float32") -> dict:
    hf = build(shape, device)
    model = CircuitModel(hf)
    batch = make_batch(n_pairs, seq_len, device)
    def run_eap_ig():
        with model.precision(dtype):  # circuits.dtype
            return attribute(model, [batch], "eap-ig", steps=steps)

    run_floor = lambda: floor_pass(hf, batch, steps)  # noqa: E731
    run_eap_ig(), run_floor()  # warm-up (allocator, kernels)
    eap_ig, floor = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both alike
        eap_ig.append(timed(run_eap_ig, device)[0])
        floor.append(timed(run_floor, device)[0])
    t_eap_ig, t_floor = min(eap_ig), min(floor)
    return {"shape": shape, **SHAPES[shape], "vocab": VOCAB, "pairs": n_pairs, "seq_len": seq_len, "steps": steps,
            "edges": model.graph.n_edges, "eap_ig_s": round(t_eap_ig, 4), "floor_s": round(t_floor, 4),
            "eap_ig_ms_per_pair": round(1000 * t_eap_ig / n_pairs, 3),
            "floor_ms_per_pair": round(1000 * t_floor / n_pairs, 3), "ratio": round(t_eap_ig / t_floor, 3),
            "pairs_per_s": round(n_pairs / t_eap_ig, 2), "device": device, "dtype": dtype,
            "peak_memory_mb": round(peak_memory_mb(device))}


def peak_memory_child(shape: str, n_pairs: int, seq_len: int, steps: int) -> None:
    model = CircuitModel(build(shape))
    attribute(model, [make_batch(n_pairs, seq_len)], "eap-ig", steps=steps)
    # VmHWM, not getrusage's ru_maxrss: the latter keeps the parent's peak across fork + exec
    status = Path("/proc/self/status").read_text()
    print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))  # KiB


def peak_memory(shape: str, n_pairs: int, seq_len: int, steps: int) -> int:
    out = subprocess.run([sys.executable, __file__, "--child-memory", shape, str(n_pairs), str(seq_len), str(steps)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 pairs and 2 repeats for the GPT-2-small shape")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=5, help="prompt tokens (the circuit pairs have 4-6)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                        help="attribution matmuls (circuits.dtype)")
    parser.add_argument("--memory", action="store_true", help="peak RSS at m = 2 and m = 20 (each shape)")
    parser.add_argument("--child-memory", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child_memory:
        shape, n, t, m = args.child_memory
        return peak_memory_child(shape, int(n), int(t), int(m))
    results = []
    for shape in args.shapes:
        quick = args.quick and shape == "gpt2-small"
        res = bench(shape, 16 if quick else args.pairs, args.seq_len, args.steps, 2 if quick else args.repeats,
                    args.device, args.dtype)
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.memory:  # fresh processes, so each peak is that run's own
        for shape in args.shapes:
            pairs = 16 if args.quick and shape == "gpt2-small" else args.pairs
            rss = {m: peak_memory(shape, pairs, args.seq_len, m) for m in (2, 20)}
            print(json.dumps({"shape": shape, "pairs": pairs, "peak_rss_mib": {m: v // 1024 for m, v in rss.items()},
                              "growth_m2_to_m20": round(rss[20] / rss[2], 3)}), flush=True)


if __name__ == "__main__":
    main()
