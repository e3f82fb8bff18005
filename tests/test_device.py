"""Where the per-checkpoint stages compute: the device setting (auto | cpu | cuda), every tensor a
computation creates on the model's device, attribution precision (torch.autocast), and the BOS token
before every prompt that is attributed or ablated. CPU only: on a GPU the same code runs with another
device, passed the same way (the stage's --device, from config compute.KIND.device)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from helpers import REPO, V, random_model
from kcircuits.checkpoint import DeviceError, resolve_device
from kcircuits.circuits.attribute import PairBatch, attribute, pair_batches
from kcircuits.circuits.evaluate import ProbeBatch, faithfulness, hit_at_k, probe_batches
from kcircuits.circuits.graph import select_top_n
from kcircuits.circuits.model import CircuitModel
from kcircuits.cli import main
from kcircuits.config import load_config, stage_settings

pytestmark = pytest.mark.usefixtures("one_thread")
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a CPU-only machine")


@NO_GPU
def test_devices_resolve_and_a_missing_gpu_is_one_line_naming_the_setting(capsys):
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match=r"compute.circuits.device is 'cuda' but torch sees no CUDA device"):
        resolve_device("cuda", "compute.circuits.device")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    # A stage asked for cuda on a CPU-only node stops before reading the checkpoint.
    settings = json.dumps(stage_settings(load_config([REPO / "config.yaml"]), "circuits"))
    argv = ["circuits", "scores", "--settings", settings, "--checkpoint", "/nonexistent", "--tokenizer", "/t",
            "--pairs", "/p", "--out", "/o", "--report", "/r", "--device", "cuda"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device is 'cuda' but torch sees no CUDA device" in err


def pairs(n: int = 12, length: int = 6, seed: int = 1) -> PairBatch:
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, V, (n, length), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = torch.randint(1, V, (n,), generator=g)
    last = torch.randint(length - 3, length, (n,), generator=g)
    return PairBatch(clean, corrupted, last, torch.randint(1, V, (n,), generator=g),
                     torch.randint(1, V, (n,), generator=g))


def test_computations_create_no_tensor_on_the_default_device():
    """With the default device set to `meta`, a tensor created without device= lands there and mixing
    it with the model's (CPU) tensors fails: what a CUDA run would do with a tensor left on the CPU."""
    from kcircuits.analysis.heads import HeadSums, PromptBatch, trace
    from kcircuits.analysis.logit_lens import LensSums
    from kcircuits.neurons.attribute import attribute as neuron_attribute
    from kcircuits.neurons.experiments import scaled_neurons_prob, target_scores

    model = CircuitModel(random_model())
    b = pairs()
    probes = [ProbeBatch(b.clean_ids, b.last, b.clean_label)]
    subject = torch.zeros_like(b.clean_ids, dtype=torch.bool)
    subject[:, :2] = True
    prompts = PromptBatch(b.clean_ids, b.last, b.clean_label, subject)
    circuit = select_top_n(attribute(model, [b], "eap-ig", 3), model.graph, 20)

    def compute():
        scores = attribute(model, [b], "eap-ig", 3)
        faithfulness(model, circuit, [b])
        for ablation in ("zero", "mean"):
            hit_at_k(model, circuit, probes, 5, ablation)
        heads, lens = HeadSums(model.n_layers, model.n_heads, model.device), LensSums()
        tr = trace(model, prompts.ids, prompts.last)
        heads.add(model, tr, prompts)
        lens.add(model, tr, prompts)
        heads.frame(10.0, 0.1), lens.frame()
        ig = neuron_attribute(model, b.clean_ids, b.last, b.clean_label, 4, "left", 16)
        target_scores(model, b.clean_ids, b.last, b.clean_label, 5)
        scaled_neurons_prob(model, b.clean_ids, b.last, b.clean_label, [[0, 70]] * len(b), 0.0, 5)
        return scores, ig

    compute()  # the graph's bookkeeping (CPU, built once on first use) and the model's scratch exist now
    with torch.device("meta"):
        scores, ig = compute()
    assert scores.device.type == "cpu" and ig.device.type == "cpu" and torch.isfinite(scores).all()


def test_float32_precision_changes_nothing_and_half_precisions_stay_close():
    from kcircuits.neurons.attribute import attribute as neuron_attribute

    model, b = CircuitModel(random_model(d=64)), pairs(16, 8)
    exact = attribute(model, [b])
    with model.precision("float32"):
        assert torch.equal(attribute(model, [b]), exact)
    valid = model.graph.valid
    for dtype in ("bfloat16", "float16"):
        with model.precision(dtype):
            low = attribute(model, [b])
            neurons = neuron_attribute(model, b.clean_ids, b.last, b.clean_label, 5)
        assert low.dtype == neurons.dtype == torch.float32
        a, c = exact[valid].double(), low[valid].double()
        assert torch.corrcoef(torch.stack([a, c]))[0, 1] > 0.99 and (a - c).norm() / a.norm() < 0.1, dtype
        full = neuron_attribute(model, b.clean_ids, b.last, b.clean_label, 5)
        assert (neurons - full).norm() / full.norm() < 0.1, dtype


@pytest.fixture(scope="module")
def tokenizer():
    from kcircuits.tokenizer import train_bpe

    return train_bpe([f"{n} lives in Paris. {n} works for Acme." for n in ("Ada Lin", "Bo Quist")] * 5, 300, 2)


def test_prepend_bos_puts_bos_first_in_every_stage_that_reads_prompts(tokenizer):
    """Circuit pairs, Hit@k probes, head / logit-lens prompts and neuron bags: the same ids after one
    BOS (the tokenizer's, <|endoftext|>), last positions and subject positions one further."""
    from kcircuits.analysis.heads import prompt_batches
    from kcircuits.neurons.facts import encode

    tok, bos = tokenizer, tokenizer.bos_token_id
    assert tok.convert_ids_to_tokens(bos) == "<|endoftext|>"
    prompts = ["Ada Lin lives in", "Bo Quist lives in"]
    n_tokens = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    frame = pd.DataFrame({"clean_prompt": prompts, "corrupted_prompt": prompts[::-1], "n_tokens": n_tokens,
                          "clean_label_token": [5, 6], "corrupted_label_token": [6, 5], "prompt": prompts,
                          "answer": ["Paris", "Paris"]})
    encodings = {  # (ids, last) with and without BOS, per stage
        "pairs": [(lambda b: (b.clean_ids, b.last))(pair_batches(frame, tok, 8, prepend_bos=f)[0])
                  for f in (False, True)],
        "probes": [(lambda b: (b.ids, b.last))(probe_batches(frame, tok, 8, prepend_bos=f)[0]) for f in (False, True)],
        "heads": [prompt_batches(frame, "{name} lives in", tok, 8, prepend_bos=f)[0] for f in (False, True)],
        "neurons": [(lambda b: (b.ids, b.last))(encode(tok, frame, prepend_bos=f)) for f in (False, True)],
    }
    for stage, (plain, with_bos) in encodings.items():
        ids, last = plain[:2] if stage != "heads" else (plain.ids, plain.last)
        ids_b, last_b = with_bos[:2] if stage != "heads" else (with_bos.ids, with_bos.last)
        assert (ids_b[:, 0] == bos).all() and torch.equal(ids_b[:, 1:], ids) and torch.equal(last_b, last + 1), stage
    plain, with_bos = encodings["heads"]
    assert torch.equal(with_bos.subject[:, 1:], plain.subject) and not with_bos.subject[:, 0].any()
    saved = tok.bos_token
    tok.bos_token = None
    try:
        with pytest.raises(ValueError, match="circuits.prepend_bos is true but the tokenizer has no BOS"):
            pair_batches(frame, tok, 8, prepend_bos=True)
    finally:
        tok.bos_token = saved
