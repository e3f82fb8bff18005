"""Analysis loading without transformers (`load_model(..., hf_forward=False)`, kcircuits.circuits.light):
for every family, CircuitModel over the hand-built modules gives exactly (torch.equal) the logits,
caches, node outputs, patched runs and attribution scores of CircuitModel over transformers' model of
the same folder; a process that loads a checkpoint for analysis imports nothing of transformers;
folders the light build does not cover load through transformers. Tiny random models, one thread."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import torch

from helpers import V, random_model
from kcircuits.checkpoint import load_model
from kcircuits.circuits.attribute import PairBatch, attribute
from kcircuits.circuits.light import AnalysisModel
from kcircuits.circuits.model import CACHE, CircuitModel
from kcircuits.neurons.attribute import attribute as neuron_attribute

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = [
    ("gpt2", {}),
    ("gpt2", {"scale_attn_by_inverse_layer_idx": True, "n_inner": 48, "activation_function": "gelu"}),
    ("gpt_neox", {}),
    ("gpt_neox", {"use_parallel_residual": False, "attention_bias": False, "hidden_act": "gelu_new",
                  "rope_parameters": {"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5}}),
    ("llama", {"num_key_value_heads": 2}),
    ("llama", {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True, "pad_token_id": 3,
               "rope_parameters": {"rope_type": "default", "rope_theta": 1000.0}}),
]
IDS = torch.randint(1, V, (4, 7), generator=torch.Generator().manual_seed(0))  # [B, T]
LAST = torch.tensor([6, 4, 2, 6])  # items 2 and 3 are right-padded
LABELS = torch.randint(1, V, (2, 4), generator=torch.Generator().manual_seed(1))  # [2, B]


def saved(tmp_path, family: str = "gpt2", **extra):
    """A random model of `family` saved as a model folder (config.json + model.safetensors)."""
    random_model(family, std=0.3, **extra).save_pretrained(tmp_path)
    return tmp_path


def both(folder) -> tuple[CircuitModel, CircuitModel]:
    """CircuitModel over transformers' model of `folder` and over the light modules."""
    return CircuitModel(load_model(folder)), CircuitModel(load_model(folder, hf_forward=False))


@pytest.mark.parametrize("family,extra", FAMILIES)
def test_light_modules_give_exactly_the_transformers_results(family, extra, tmp_path):
    full, light = both(saved(tmp_path, family, **extra))
    assert isinstance(light.hf, AnalysisModel) and not isinstance(full.hf, AnalysisModel)
    weights, mine = full.hf.state_dict(), light.hf.state_dict()
    assert mine.keys() == weights.keys() and all(torch.equal(mine[k], weights[k]) for k in weights)
    with torch.no_grad():
        runs = [m.run(IDS, LAST, cache=list(CACHE)) for m in (full, light)]  # (logits [B, V], {name: tensor})
        assert torch.equal(runs[0][0], runs[1][0])
        assert all(torch.equal(runs[0][1][name], runs[1][1][name]) for name in CACHE)
        recorded = [m.run(IDS, LAST, record=True)[1] for m in (full, light)]  # [n_fwd, B, T, d]
        assert torch.equal(*recorded)
        mask = ((torch.rand(full.graph.valid.shape, generator=torch.Generator().manual_seed(2)) < 0.5)
                & full.graph.valid).float()  # [n_fwd, n_bwd]: about half the edges
        assert torch.equal(*(m.run(IDS, LAST, mask=mask, reference=recorded[0].flip(1)) for m in (full, light)))
        entries = {0: (runs[0][1]["resid"][1, torch.arange(4), LAST], torch.arange(4))}  # [B, d], [B]
        cached = runs[0][1]
        assert torch.equal(*(m.run_last(entries, LAST, cached["keys"], cached["values"]) for m in (full, light)))
    pairs = PairBatch(IDS, IDS.flip(0), LAST, LABELS[0], LABELS[1])
    assert torch.equal(*(attribute(m, [pairs], steps=3) for m in (full, light)))  # EAP-IG, per-slot backward
    assert torch.equal(*(neuron_attribute(m, IDS, LAST, LABELS[0], steps=3) for m in (full, light)))


def test_a_process_loading_for_analysis_imports_nothing_of_transformers(tmp_path):
    """Nor torch._dynamo (with sympy, seconds), which torch's initialisers on a meta device would import."""
    folder = saved(tmp_path)
    code = ("import sys; from kcircuits.checkpoint import load_model; from kcircuits.circuits.model import "
            f"CircuitModel; CircuitModel(load_model({str(folder)!r}, hf_forward=False)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'sympy') "
            "or m.startswith('torch._dynamo')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_light_model_has_no_forward(tmp_path):
    model = load_model(saved(tmp_path), hf_forward=False)
    with pytest.raises(TypeError, match="hf_forward=True"):
        model(IDS)


def edit_config(folder, **changes) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("family,changes,why", [
    ("gpt2", {"activation_function": "quick_gelu"}, "activation 'quick_gelu'"),
    ("llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}}, "rotary settings"),
    ("gpt_neox", {"rotary_pct": 0.5}, "legacy keys"),
    ("gpt2", {"dtype": "bfloat16"}, "dtype 'bfloat16'"),
])
def test_what_the_light_build_does_not_cover_loads_through_transformers(family, changes, why, tmp_path, caplog):
    folder = saved(tmp_path, family)
    edit_config(folder, **changes)
    with caplog.at_level(logging.INFO, logger="kcircuits.checkpoint"):
        model = load_model(folder, hf_forward=False)
    assert not isinstance(model, AnalysisModel) and why in caplog.text


def test_unexpected_weights_load_through_transformers(tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    folder = saved(tmp_path, "gpt2")
    weights = load_file(folder / "model.safetensors")
    weights["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)  # a buffer of old GPT-2 checkpoints
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.INFO, logger="kcircuits.checkpoint"):
        model = load_model(folder, hf_forward=False)
    assert not isinstance(model, AnalysisModel) and "unexpected ['transformer.h.0.attn.masked_bias']" in caplog.text
