"""Knowledge-neuron attribution speed: the batched implementation against the public reference loop.

Both compute the integrated-gradient attributions of every MLP hidden neuron of every layer for one
fact's bag of prompts (softmax P(target), m points linspace(0, 1, m), as EleutherAI's
knowledge-neurons) on the same randomly initialised GPT-2-shaped model:

  reference  the loop the public implementations run: for each prompt and each layer, one no-grad
             forward for the clean activations, then one forward + backward of a batch of the m
             scaled copies on the Hugging Face model, a forward pre-hook on the layer's MLP down
             projection replacing the last position's activations (gradients w.r.t. those only,
             weights frozen; logits only at the last position, which favours the reference);
  batched    kcircuits.neurons.attribute.attribute on CircuitModel: layers x prompts x steps rows per
             forward + backward, up to --batch-size rows.

The scores must agree (torch.testing.assert_close, rtol=1e-4 and atol=1e-5 of the largest |score|:
the model is random, so scores are ~1e-8 and an absolute atol would mean nothing). Timings are the
minimum of interleaved repeats (the machine is shared), one thread by default; the goal is
batched >= 5x faster than the reference.

    python benchmarks/neurons.py                    # GPT-2-small shape (12 x 768, 3072 neurons, vocab 8k)
    python benchmarks/neurons.py --quick            # 3 of the 12 layers, one timed repeat
    python benchmarks/neurons.py --shape tiny       # 4 layers, d = 128: seconds
    python benchmarks/neurons.py --device cuda      # on a GPU: facts/s, peak memory
"""
from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from shapes import SHAPES, VOCAB, build, peak_memory_mb, timed  # noqa: E402

from kcircuits.circuits.model import CircuitModel  # noqa: E402
from kcircuits.neurons.attribute import alphas, attribute  # noqa: E402

LENGTHS = (9, 10, 11, 10)  # the bag: 4 prompts of ~10 tokens (right-padded for the batched run)


def make_bag(lengths=LENGTHS, device: str = "cpu"):
    """ids [P, T] right-padded with 0, last [P], targets [P] (fixed seed), on `device`."""
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for p, n in enumerate(lengths):
        ids[p, :n] = torch.randint(1, VOCAB, (n,), generator=g)
    bag = ids, torch.tensor(lengths) - 1, torch.randint(1, VOCAB, (len(lengths),), generator=g)
    return tuple(t.to(device) for t in bag)


def down_proj(hf, layer: int) -> torch.nn.Module:
    return hf.transformer.h[layer].mlp.c_proj  # GPT-2: its input is the MLP hidden activations


def reference(hf, ids, last, targets, steps: int, layers: list[int]) -> torch.Tensor:
    """EleutherAI's loop: prompt by prompt, layer by layer, one batch of the m scaled copies. -> [L, P, m]"""
    alpha = alphas(steps, "grid")
    out = torch.zeros(hf.config.n_layer, len(ids), hf.config.n_inner or 4 * hf.config.n_embd)
    for p in range(len(ids)):
        prompt = ids[p, : last[p] + 1][None]  # [1, T]: unpadded
        for layer in layers:
            clean = {}
            keep = down_proj(hf, layer).register_forward_pre_hook(lambda m, a: clean.setdefault("x", a[0][0, -1]))
            with torch.no_grad():
                hf(prompt, logits_to_keep=1)
            keep.remove()
            a = clean["x"]  # [m]
            scaled = (alpha[:, None] * a).requires_grad_(True)  # [S, m]

            def replace(module, args, scaled=scaled):
                x = args[0].clone()
                x[:, -1] = scaled
                return (x,)

            patch = down_proj(hf, layer).register_forward_pre_hook(replace)
            logits = hf(prompt.expand(steps, -1), logits_to_keep=1).logits[:, -1]  # [S, V]
            patch.remove()
            prob = torch.softmax(logits, -1)[:, targets[p]]  # [S]
            (grad,) = torch.autograd.grad(prob.sum(), scaled)  # rows are independent
            out[layer, p] = a * grad.mean(0)
    return out


def bench(shape: str, steps: int, batch_size: int, repeats: int, layers: list[int] | None,
          device: str = "cpu") -> dict:
    hf = build(shape, device)
    model = CircuitModel(hf)  # freezes hf's weights too: the reference runs on the same frozen model
    ids, last, targets = make_bag(device=device)
    layers = list(range(model.n_layers)) if layers is None else layers
    run_ref = lambda: reference(hf, ids, last, targets, steps, layers)  # noqa: E731
    run_batched = lambda: attribute(model, ids, last, targets, steps=steps, points="grid",  # noqa: E731
                                    batch_size=batch_size, layers=layers)
    t_ref, t_batched = [], []
    for i in range(repeats + 1):  # interleaved, so load changes hit both alike; round 0 is the warm-up
        t, ref = timed(run_ref, device)
        t_ref.append(t)
        t, scores = timed(run_batched, device)
        t_batched.append(t)
        if i == 0:
            scale = ref.abs().max().item()
            torch.testing.assert_close(scores, ref, rtol=1e-4, atol=1e-5 * scale)
            err = ((scores - ref).abs() / (1e-5 * scale + 1e-4 * ref.abs())).max().item()
    ref_s, batched_s = min(t_ref[1:] or t_ref), min(t_batched[1:] or t_batched)
    return {"shape": shape, **SHAPES[shape], "vocab": VOCAB, "prompts": len(ids), "lengths": list(LENGTHS),
            "steps": steps, "layers": layers if len(layers) < model.n_layers else "all", "batch_size": batch_size,
            "threads": torch.get_num_threads(), "repeats": repeats, "max_abs_score": scale,
            "max_err_over_tolerance": round(err, 4), "reference_s_per_fact": round(ref_s, 3),
            "batched_s_per_fact": round(batched_s, 3), "speedup": round(ref_s / batched_s, 2),
            "facts_per_s": round(1 / batched_s, 3), "device": device, "peak_memory_mb": round(peak_memory_mb(device))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="gpt2-small", choices=list(SHAPES))
    parser.add_argument("--quick", action="store_true", help="layers 0, L/2 and L-1 only, one timed repeat")
    parser.add_argument("--steps", type=int, default=20, help="m, the integral's points")
    parser.add_argument("--batch-size", type=int, default=512, help="rows per forward of the batched run")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_layer = SHAPES[args.shape]["n_layer"]
    layers = sorted({0, n_layer // 2, n_layer - 1}) if args.quick else None
    res = bench(args.shape, args.steps, args.batch_size, 1 if args.quick else args.repeats, layers, args.device)
    print(json.dumps(res), flush=True)
    print(f"\n{'':10} {'s / fact':>10}\nreference  {res['reference_s_per_fact']:>10.3f}\n"
          f"batched    {res['batched_s_per_fact']:>10.3f}\nspeedup    {res['speedup']:>10.2f}x (goal >= 5x)")


if __name__ == "__main__":
    main()
