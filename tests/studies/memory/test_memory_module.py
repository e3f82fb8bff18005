"""The gated document memory (memory.module: gated): it starts as the model it is added to, the
Hugging Face and CircuitModel views of it agree, only it trains, it survives saving, the inductive
loss moves its activity into the allocation, and measures made document by document equal one
made under that document's key."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import V, random_model
from kcircuits.circuits.model import CircuitModel
from kcircuits.studies.memory.loss import capture_slots, slot_share
from kcircuits.studies.memory.module import GatedMemory, build_memory, load_memory, slot_activity
from kcircuits.studies.memory.train import DocumentBlocks, memory_trainer, split_memory

pytestmark = pytest.mark.usefixtures("one_thread")
GATED = {"key_dim": None, "gate": "tanh"}


def perturbed(memory: GatedMemory, seed: int = 1) -> GatedMemory:
    """The memory with random W_up, b_up: as if trained (a fresh one adds exactly 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        memory.up.weight.copy_(torch.randn(memory.up.weight.shape, generator=g) * 0.5)
        memory.up.bias.copy_(torch.randn(memory.up.bias.shape, generator=g) * 0.5)
    return memory


def test_a_new_memory_adds_nothing_and_keys_are_orthonormal():
    hf = random_model().eval()
    ids = torch.randint(1, V, (2, 9))
    memory = build_memory(hf, 1, 3, {"key_dim": 4, "gate": "relu"}, seed=0)
    keys = memory.keys  # [3, 4]
    assert torch.allclose(keys @ keys.T, torch.eye(3), atol=1e-6)
    with torch.no_grad():
        base = hf(ids).logits
        with memory.attached(hf, 1), memory.reading(2):
            assert torch.equal(hf(ids).logits, base)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_model_and_the_circuit_model_see_the_same_memory(family):
    hf = random_model(family, layers=3, d=32).eval()
    layer, ids = 1, torch.randint(1, V, (3, 7))
    last = torch.full((3,), 6)
    memory = perturbed(build_memory(hf, layer, 4, GATED, seed=0)).requires_grad_(False)
    with torch.no_grad():
        base = hf(ids).logits[:, -1]
        model = CircuitModel(hf)
        memory.attach_circuit_model(model, layer)
        with memory.attached(hf, layer):
            outs = {}
            for doc in (0, 3, -1):
                with memory.reading(doc):
                    with capture_slots(hf, layer) as store:
                        logits = hf(ids).logits[:, -1]
                    circuit, cache = model.run(ids, last, cache="mlp_hidden")
                assert torch.allclose(logits, circuit, atol=1e-4)
                assert torch.allclose(store["hidden"][:, -1], cache["mlp_hidden"][layer], atol=1e-5)
                outs[doc] = logits
    assert torch.equal(outs[-1], base)  # no document: no memory
    assert not torch.allclose(outs[0], outs[3], atol=1e-3)  # each document reads its own gates
    assert not torch.allclose(outs[0], base, atol=1e-3)


def gated_run(tmp_path, alpha: float, allocation: torch.Tensor | None):
    """A few steps of a gated memory on random documents (3 of them, hook layer 1)."""
    from helpers import micro_settings
    from kcircuits.train.trainer import run_training

    hf = random_model(d=16, std=0.05)
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    memory = build_memory(hf, 1, 3, GATED, seed=0)
    hf.requires_grad_(False).add_module("document_memory", memory)
    rng = np.random.default_rng(0)
    data = DocumentBlocks(rng.integers(1, V, (12, 8)), rng.integers(0, 3, (12, 8)))
    settings = micro_settings(train={"batch_size": 4, "grad_accum": 1})
    with memory.attached(hf, 1):
        final, _ = run_training(hf, data, settings, {"device": "cpu"}, tmp_path / "scratch", 3e-2, epochs=4,
                                threads=1, trainer_class=memory_trainer(alpha, 1, allocation, memory))
    return hf, memory, before, final


def test_only_the_memory_trains_and_it_is_saved_beside_the_model(tmp_path):
    hf, memory, before, final = gated_run(tmp_path, 0.0, None)
    state = hf.state_dict()
    assert all(torch.equal(state[k], v) for k, v in before.items())  # the language model is frozen
    assert memory.up.weight.abs().sum() > 0  # the memory learned
    folder = split_memory(memory, final, tmp_path / "export")
    from safetensors.torch import load_file

    assert not any(k.startswith("document_memory.") for k in load_file(str(folder / "model.safetensors")))
    loaded = load_memory(folder)
    assert loaded.layer == 1 and load_memory(tmp_path) is None
    ids = torch.randint(1, V, (2, 8))
    with torch.no_grad():
        hf.eval()
        with memory.attached(hf, 1), memory.reading(2):
            trained = hf(ids).logits
        fresh = random_model(d=16, std=0.05).eval()
        with loaded.attached(fresh, 1), loaded.reading(2):
            assert torch.equal(fresh(ids).logits, trained)


def test_a_positive_alpha_moves_the_memorys_activity_into_the_allocation(tmp_path):
    from test_memory_loss import blocks_and_tokens

    allocation, ids, doc = blocks_and_tokens()

    def mean_share(run):
        hf, memory, _, _ = run
        with torch.no_grad(), memory.attached(hf.eval(), 1), memory.reading(doc), slot_activity(hf, 1, memory) as s:
            hf(ids)
        return slot_share(s["hidden"], doc, allocation).mean().item()

    plain = mean_share(gated_run(tmp_path / "zero", 0.0, None))
    guided = mean_share(gated_run(tmp_path / "guided", 2.0, allocation))
    assert guided > plain + 0.2


def test_circuit_scores_made_document_by_document_equal_one_made_under_the_documents_key():
    from test_memory_loss import documents_and_tokenizer

    from kcircuits.circuits.attribute import attribute, pair_batches
    from kcircuits.circuits.pipeline import batched
    from kcircuits.studies.memory.measure import document_parts

    _, tok = documents_and_tokenizer()
    hf = random_model(d=16, std=0.1).eval()
    memory = perturbed(build_memory(hf, 1, 2, GATED, seed=0)).requires_grad_(False)
    model = CircuitModel(hf)
    memory.attach_circuit_model(model, 1)
    pairs = pd.DataFrame({"clean_prompt": ["alpha lives in", "beta lives in", "gamma lives in"],
                          "corrupted_prompt": ["gamma lives in", "delta lives in", "alpha lives in"],
                          "n_tokens": 3, "clean_label": ["paris", "rome", "paris"],
                          "corrupted_label": ["rome", "paris", "rome"], "doc": [1, 1, 1]})
    pairs["clean_label_token"] = [tok.convert_tokens_to_ids(w) for w in pairs["clean_label"]]
    pairs["corrupted_label_token"] = [tok.convert_tokens_to_ids(w) for w in pairs["corrupted_label"]]

    def make(rows):
        return pair_batches(rows, tok, batch_size=2)

    parts = batched(pairs, make, lambda rows: document_parts(memory, rows))
    by_parts = attribute(model, parts, steps=3)
    with memory.reading(1):
        whole = attribute(model, make(pairs), steps=3)
    with memory.reading(0):
        other = attribute(model, make(pairs), steps=3)
    assert torch.allclose(by_parts, whole, atol=1e-6) and list(parts) and len(list(parts)) == 2  # re-iterable
    assert not torch.allclose(by_parts, other, atol=1e-4)
