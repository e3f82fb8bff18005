"""RECKONING's outer step: peak memory and wall time against the inner steps N, second vs first order.

One outer step is method_loss("reckoning") + backward on one synthetic context: F facts (~16 tokens:
"fact i:" masked, then the sentence) written into theta' by N inner steps, then the CE of Q
questions' answers (~20 tokens, the last 3 the answer) under theta', back-propagated into theta and
the learned rates. Each (N, order) runs in its own forked child (the imports are shared, the
memory is not), so one configuration's peak cannot hide the next:

  peak MB   CUDA: torch.cuda.max_memory_allocated (reset before the step) minus what was
            allocated before it; CPU: the peak resident set (VmHWM, reset through
            /proc/self/clear_refs) minus the resident set before the step, after a warm-up forward
            and malloc_trim, with heap blocks >= 64 KiB mmapped (freed memory leaves the RSS, so
            the RSS follows torch's allocations). Not getrusage's ru_maxrss (shapes.peak_memory_mb):
            it cannot be reset and a child inherits its parent's peak.
  seconds   the minimum over repeats of the same step (glibc's usual mmap threshold again).

Expected: second order keeps every inner step's activations and its gradient's graph alive until
the outer backward, so its peak grows ~linearly in N (one forward + backward of the facts per
step); first order detaches each inner gradient, so it keeps only a parameter-sized update per step.
The `higher` package leaked memory across outer steps (facebookresearch/higher #6, #138): the leak
check runs 5 consecutive outer steps (AdamW step included, after one warm-up step that allocates
the optimiser's state) in one child; a step-5 / step-1 peak ratio near 1 means no leak.

    python benchmarks/reckoning_memory.py --quick             # N = 1, 2, 4 on the default tiny model
    python benchmarks/reckoning_memory.py                     # N = 1, 2, 4, 8
    python benchmarks/reckoning_memory.py --shape gpt2-small --device cuda
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import multiprocessing
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from shapes import SHAPES, VOCAB, timed  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402  (imported once, shared by the children)

from kcircuits.studies.reckoning.batches import IGNORE, pad  # noqa: E402
from kcircuits.studies.reckoning.inner import use_eager_attention  # noqa: E402
from kcircuits.studies.reckoning.train import make_rates, method_loss, outer_optimizer  # noqa: E402

# The embedded default (config.yaml model + tokenizer.vocab_size), then the shared shapes (vocab VOCAB).
MODELS = {"default": (dict(n_layer=2, n_embd=128, n_head=4), 4096), **{k: (v, VOCAB) for k, v in SHAPES.items()}}
OUTER = {"lr": 3e-4, "weight_decay": 0.1}  # reckoning.outer of config.yaml


def rows(n: int, length: int, masked: int, vocab: int, g: torch.Generator) -> list:
    """n (ids, labels) rows of length +- 2 tokens, BOS 0 first, the first `masked` tokens unlabelled."""
    out = []
    for _ in range(n):
        t = length + int(torch.randint(-2, 3, (1,), generator=g))
        ids = [0, *torch.randint(1, vocab, (t - 1,), generator=g).tolist()]
        out.append((ids, [IGNORE] * masked + ids[masked:]))
    return out


def setup(spec: dict):
    """(model, rates, batches, inner) of one configuration, on spec['device'], seed 0."""
    torch.set_num_threads(spec["threads"])
    mmap_threshold(spec["device"], 64 * 1024)
    shape, vocab = MODELS[spec["shape"]]
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=128, bos_token_id=0, eos_token_id=0, **shape)
    model = use_eager_attention(GPT2LMHeadModel(cfg).to(spec["device"]).eval())  # dropout off, 2nd derivative
    inner = {"steps": spec["n"], "lr": 1e-3, "optimizer": spec["optimizer"], "adapt": "all",
             "learn_rates": True, "first_order": spec["first_order"]}
    rates = make_rates(model, inner).to(spec["device"])
    g = torch.Generator().manual_seed(1)
    batches = {"facts": pad(rows(spec["facts"], 16, 4, vocab, g), 0, spec["device"]),
               "ask": pad(rows(spec["questions"], 20, 17, vocab, g), 0, spec["device"])}
    with torch.no_grad():  # warm-up forward: allocator, kernels
        model(batches["ask"]["input_ids"], attention_mask=batches["ask"]["attention_mask"])
    return model, rates, batches, inner


def mmap_threshold(device: str, nbytes: int) -> None:
    """CPU: heap blocks >= nbytes come from mmap and go back when freed, so the resident set follows
    what torch holds (64 KiB for memory; glibc's dynamic ceiling, 32 MiB, for time: mmap is slow)."""
    if device == "cpu":
        ctypes.CDLL("libc.so.6").mallopt(-3, nbytes)  # M_MMAP_THRESHOLD, fixed (no dynamic raise)


def _status_mb(field: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # KiB


def resting_mb(device: str) -> float:
    """Memory held now: allocated by torch (CUDA), or the resident set after returning freed heap (CPU)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() / 2**20
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _status_mb("VmRSS")


def reset_peak(device: str) -> None:
    if device == "cuda":
        return torch.cuda.reset_peak_memory_stats()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


def peak_mb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else _status_mb("VmHWM")


def measure_step(spec: dict) -> dict:
    """Peak memory over the resting state and the best wall time of one outer step (no optimiser step)."""
    model, rates, batches, inner = setup(spec)
    params = [*model.parameters(), *rates.parameters()]

    def step():
        method_loss(model, rates, batches, "reckoning", inner).backward()

    base = resting_mb(spec["device"])
    reset_peak(spec["device"])
    step()
    peak = peak_mb(spec["device"]) - base
    mmap_threshold(spec["device"], 32 << 20)
    times = []
    for _ in range(spec["repeats"]):
        for p in params:
            p.grad = None
        times.append(timed(step, spec["device"])[0])
    return {"n": spec["n"], "order": "first" if spec["first_order"] else "second",
            "peak_mb": round(peak, 1), "seconds": round(min(times), 4)}


def measure_leak(spec: dict, outer_steps: int = 5) -> dict:
    """Peak and resting memory of consecutive outer steps (loss, backward, AdamW step) at fixed N."""
    model, rates, batches, inner = setup(spec)
    opt = outer_optimizer(model, rates, OUTER)

    def step():
        method_loss(model, rates, batches, "reckoning", inner).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up: AdamW's state, allocated once, is not a leak
    base = resting_mb(spec["device"])
    peaks, resting = [], []
    for _ in range(outer_steps):
        reset_peak(spec["device"])
        step()
        peaks.append(round(peak_mb(spec["device"]) - base, 1))
        resting.append(round(resting_mb(spec["device"]) - base, 1))
    return {"n": spec["n"], "order": "first" if spec["first_order"] else "second", "outer_steps": outer_steps,
            "peak_mb_per_step": peaks, "resting_mb_after_step": resting,
            "peak_ratio_last_to_first": round(peaks[-1] / peaks[0], 3)}


def in_child(fn, spec: dict) -> dict:
    """fn(spec) in a forked child: the parent's imports are shared, the child's memory peak is its own.
    (The parent runs no torch op and never initialises CUDA, so forking is safe.)"""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(fn, (spec,))


def summarise(results: list[dict]) -> dict:
    """Second order at N over N = 1, its peak's growth per inner step (least squares), second / first."""
    by = {(r["n"], r["order"]): r for r in results}
    ns = sorted({r["n"] for r in results})
    second = [by[n, "second"]["peak_mb"] for n in ns]
    mean_n, mean_p = sum(ns) / len(ns), sum(second) / len(ns)
    slope = (sum((n - mean_n) * (p - mean_p) for n, p in zip(ns, second))
             / max(sum((n - mean_n) ** 2 for n in ns), 1e-9))
    return {"second_order_peak_vs_n1": {n: round(p / second[0], 3) for n, p in zip(ns, second)},
            "second_order_mb_per_inner_step": round(slope, 2),
            "second_over_first_peak": {n: round(by[n, "second"]["peak_mb"] / by[n, "first"]["peak_mb"], 3)
                                       for n in ns},
            "second_over_first_seconds": {n: round(by[n, "second"]["seconds"] / by[n, "first"]["seconds"], 3)
                                          for n in ns}}


def print_table(results: list[dict], summary: dict, leak: dict) -> None:
    print(f"\n{'N':>3} {'order':>7} {'peak MB':>9} {'seconds':>9} {'peak/N=1':>9} {'2nd/1st':>8}")
    for r in results:
        second = r["order"] == "second"
        vs1 = f"{summary['second_order_peak_vs_n1'][r['n']]:.2f}" if second else ""
        ratio = f"{summary['second_over_first_peak'][r['n']]:.2f}" if second else ""
        print(f"{r['n']:>3} {r['order']:>7} {r['peak_mb']:>9.1f} {r['seconds']:>9.4f} {vs1:>9} {ratio:>8}")
    print(f"second order: {summary['second_order_mb_per_inner_step']:.1f} MB more peak per inner step "
          "(~linear expected: every step's activations and gradient graph live until the outer backward)")
    print(f"leak check (N = {leak['n']}, {leak['outer_steps']} outer steps): peak MB {leak['peak_mb_per_step']}, "
          f"resting MB {leak['resting_mb_after_step']}, step {leak['outer_steps']} / step 1 = "
          f"{leak['peak_ratio_last_to_first']:.3f} (~1: no growth across outer steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 2, 4, two timed repeats, leak check at N = 2")
    parser.add_argument("--shape", default="default", choices=list(MODELS))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--facts", type=int, default=9, help="F facts in the context (~16 tokens each)")
    parser.add_argument("--questions", type=int, default=5, help="Q questions (~20 tokens each)")
    parser.add_argument("--optimizer", default="adam", choices=("adam", "sgd"), help="reckoning.inner.optimizer")
    parser.add_argument("--repeats", type=int, default=3, help="timed outer steps after the measured one")
    parser.add_argument("--leak-n", type=int, default=4, help="N of the leak check (quick: 2)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    ns = (1, 2, 4) if args.quick else (1, 2, 4, 8)
    base = {"shape": args.shape, "device": args.device, "facts": args.facts, "questions": args.questions,
            "optimizer": args.optimizer, "threads": args.threads, "repeats": 2 if args.quick else args.repeats}
    results = []
    for n in ns:
        for first_order in (False, True):
            results.append(in_child(measure_step, {**base, "n": n, "first_order": first_order}))
            print(json.dumps({**base, **results[-1]}), flush=True)
    summary = summarise(results)
    leak = in_child(measure_leak, {**base, "n": 2 if args.quick else args.leak_n, "first_order": False})
    shape, vocab = MODELS[args.shape]
    print(json.dumps({**base, **shape, "vocab": vocab, "results": results, **summary, "leak": leak}), flush=True)
    print_table(results, summary, leak)


if __name__ == "__main__":
    main()
