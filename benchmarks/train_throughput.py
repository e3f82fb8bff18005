"""Training throughput: the Hugging Face Trainer against a plain torch loop, same model and batches.

Each mode runs in a fresh subprocess (so peak memory is its own) on identical random token blocks,
with the project's optimiser settings (AdamW, clipping, constant LR). Warm-up steps are excluded
from the timing. The modes alternate for --repeats rounds and the medians are reported, so a load
change on a shared machine hits both alike. Prints tokens/s, peak memory and the Trainer /
plain-loop ratio from this one run.

    python benchmarks/train_throughput.py                      # default config, 2 threads
    python benchmarks/train_throughput.py --config config.yaml tests/config/smoke.yaml --threads 1
    # + MFU:
    python benchmarks/train_throughput.py --config config.yaml config.paper.yaml --device cuda --peak-tflops PEAK
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (see kcircuits.train)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
# As the training rules run jobs (rules/common.smk, TRAIN_ENV): glibc keeps freed activation memory.
MODE_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
sys.path.insert(0, str(REPO / "workflow"))


class VocabOnly:
    """Stands in for a tokenizer when only the vocabulary size and special ids matter."""

    def __init__(self, size: int):
        self.size, self.bos_token_id, self.eos_token_id, self.pad_token_id = size, 0, 0, 1

    def __len__(self):
        return self.size


def flops_per_token(model, m: dict, block: int) -> float:
    """Model FLOPs of one training token (PaLM, appendix B): 6 N for the matrix products of the N
    weights a token passes through (the tied embedding counts once, as the output projection; learned
    positions are a lookup), plus 12 L d T for attention scores and values over a context of T."""
    positions = sum(p.numel() for n, p in model.named_parameters() if n.endswith(("wpe.weight",)))
    n_weights = sum(p.numel() for p in model.parameters()) - positions
    return 6 * n_weights + 12 * m["n_layer"] * m["n_embd"] * block


def measure(mode: str, cfg: dict, vocab: int, steps: int, warmup: int, threads: int, device: str) -> dict:
    """Time `steps` optimiser steps after `warmup` ones; returns tokens/s and peak memory."""
    import torch
    from shapes import peak_memory_mb

    from kcircuits.train.corpus import BlockDataset
    from kcircuits.train.model import build_model

    torch.set_num_threads(threads)
    t = cfg["train"]
    batch, block = t["batch_size"], t["block_size"]
    total = warmup + steps
    blocks = torch.randint(2, vocab, (batch * total, block)).numpy()  # [batch * total, block]
    dataset = BlockDataset(blocks)
    model = build_model(cfg["model"], VocabOnly(vocab), cfg["seed"])
    marks: dict[str, float] = {}

    if mode == "plain":
        model.to(device).train()
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": t["weight_decay"]},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=t["continual"]["lr"], betas=tuple(t["adam_betas"]), eps=t["adam_epsilon"])
        for step in range(total):
            if step == warmup:
                marks["start"] = time.perf_counter()
            rows = slice(step * batch, (step + 1) * batch)
            out = model(input_ids=dataset.input_ids[rows].to(device), labels=dataset.input_ids[rows].to(device))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t["max_grad_norm"])
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        marks["end"] = time.perf_counter()
    else:
        import tempfile

        from transformers import Trainer, TrainerCallback, TrainingArguments

        from kcircuits.train.trainer import trainer_kwargs

        class StepClock(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == warmup:
                    marks["start"] = time.perf_counter()
                if state.global_step == total:
                    marks["end"] = time.perf_counter()

        with tempfile.TemporaryDirectory() as tmp:
            kwargs = trainer_kwargs(cfg, {"device": device}, tmp, t["continual"]["lr"], max_steps=total)
            kwargs |= {"disable_tqdm": True, "logging_strategy": "no", "report_to": "none"}
            trainer = Trainer(model=model, args=TrainingArguments(**kwargs), train_dataset=dataset,
                              callbacks=[StepClock()])
            trainer.train()
    seconds = marks["end"] - marks["start"]
    return {"mode": mode, "tokens_per_s": steps * batch * block / seconds, "seconds": seconds,
            "flops_per_token": flops_per_token(model, cfg["model"], block),
            "peak_memory_mb": peak_memory_mb(device), "steps": steps, "batch": batch, "block": block,
            "threads": threads, "device": device}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", nargs="+", default=[str(REPO / "config.yaml")])
    parser.add_argument("--vocab", type=int, default=3301, help="vocabulary size (default: the default BPE's)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds of both modes")
    parser.add_argument("--mode", choices=["plain", "trainer"], help=argparse.SUPPRESS)  # one subprocess's job
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--peak-tflops", type=float,
                        help="the device's peak dense TFLOP/s in the training precision: also report MFU")
    args = parser.parse_args()

    from kcircuits.config import load_config

    cfg = load_config(args.config)
    if args.mode:
        print(json.dumps(measure(args.mode, cfg, args.vocab, args.steps, args.warmup, args.threads, args.device)))
        return 0
    rounds: dict[str, list[dict]] = {"plain": [], "trainer": []}
    for _ in range(args.repeats):
        for mode in rounds:
            cmd = [sys.executable, __file__, "--mode", mode, "--config", *args.config, "--vocab", str(args.vocab),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                   "--device", args.device]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=MODE_ENV).stdout
            rounds[mode].append(json.loads(out.strip().splitlines()[-1]))
    results = {mode: {**runs[0], "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
                      "peak_memory_mb": max(r["peak_memory_mb"] for r in runs),
                      "rounds_tokens_per_s": [round(r["tokens_per_s"]) for r in runs]}
               for mode, runs in rounds.items()}
    for r in results.values():  # model FLOPs utilisation: achieved model FLOP/s over the device's peak
        r["model_tflops_per_s"] = r["tokens_per_s"] * r["flops_per_token"] / 1e12
        if args.peak_tflops:
            r["mfu"] = r["model_tflops_per_s"] / args.peak_tflops
    ratio = results["trainer"]["tokens_per_s"] / results["plain"]["tokens_per_s"]
    m = cfg["model"]
    print(f"model {m['family']} {m['n_layer']}L n_embd {m['n_embd']}, vocab {args.vocab}, batch "
          f"{cfg['train']['batch_size']} x {cfg['train']['block_size']} tokens, {args.threads} threads, {args.device}")
    for mode, r in results.items():
        print(f"{mode:8s} {r['tokens_per_s']:10,.0f} tokens/s (median of {r['rounds_tokens_per_s']})   "
              f"peak memory {r['peak_memory_mb']:8,.0f} MB   model {r['model_tflops_per_s']:.3f} TFLOP/s"
              + (f" (MFU {r['mfu']:.1%})" if "mfu" in r else ""))
    print(f"trainer / plain throughput (medians): {ratio:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "ratio": ratio}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
