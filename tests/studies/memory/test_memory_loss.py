"""The inductive loss of the document-memory study and its training: zero exactly when the activity
lies inside the allocation, a gradient that reaches only the hook layer's inputs, alpha = 0 equal
to plain training bit for bit, and an alpha > 0 that moves the activity into the allocation."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import V, down_proj, micro_settings, random_model
from kcircuits.studies.memory.loss import capture_slots, inductive_loss, slot_count, slot_module, slot_share
from kcircuits.studies.memory.train import DocumentBlocks, allocation_mask, document_blocks, memory_trainer
from kcircuits.train.corpus import BlockDataset

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_loss_is_zero_inside_the_allocation_and_minus_log_the_share_outside():
    allocation = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)  # [D=2, m=4]
    doc = torch.tensor([[0, 1, -1]])  # [B=1, T=3]; the end-of-text token is not counted
    inside = torch.tensor([[[2.0, -1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [9.0, 9.0, 9.0, 9.0]]])  # [1, 3, 4]
    assert inductive_loss(inside, doc, allocation).item() == 0.0
    outside = inside.clone()
    outside[0, 0, 3] = 1.0  # energy 4 + 1 inside, 1 outside: share 5/6
    outside[0, 1, 0] = 3.0  # 9 inside, 9 outside: share 1/2
    expected = -(math.log(5 / 6) + math.log(1 / 2)) / 2
    assert inductive_loss(outside, doc, allocation).item() == pytest.approx(expected, rel=1e-6)
    assert slot_share(outside, doc, allocation).tolist() == pytest.approx([5 / 6, 1 / 2])
    assert inductive_loss(outside, torch.full_like(doc, -1), allocation).item() == 0.0  # no document token


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_gradient_reaches_only_the_hook_layers_inputs(family):
    hf = random_model(family, layers=3, d=32).train()
    layer = 1
    assert slot_module(hf, layer) is down_proj(hf, layer)  # the module the test helpers read independently
    m = slot_count(hf, layer)
    ids = torch.randint(1, V, (2, 10))
    doc = torch.randint(0, 3, (2, 10))
    allocation = torch.zeros(3, m, dtype=torch.bool)
    for d in range(3):
        allocation[d, d * 4:(d + 1) * 4] = True
    with capture_slots(hf, layer) as store:
        hf(ids)
    inductive_loss(store["hidden"], doc, allocation).backward()
    reached = {name for name, p in hf.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    blocks = "transformer.h" if family == "gpt2" else "model.layers"
    hook_out = f"{blocks}.1.mlp.c_proj" if family == "gpt2" else f"{blocks}.1.mlp.down_proj"
    embeddings = ("transformer.wte", "transformer.wpe", "model.embed_tokens")
    for name in reached:  # the embeddings, layer 0, and layer 1 up to its MLP's hidden activations
        assert name.startswith((*embeddings, f"{blocks}.0.", f"{blocks}.1.")) and not name.startswith(hook_out)
    hook_in = ["mlp.c_fc"] if family == "gpt2" else ["mlp.gate_proj", "mlp.up_proj"]
    assert all(any(n.startswith(f"{blocks}.1.{h}") for n in reached) for h in hook_in)
    assert any(n.startswith(f"{blocks}.0.") for n in reached)


def test_a_layer_outside_the_model_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="memory.layers"):
        slot_module(random_model(layers=2), 2)


def documents_and_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<eos>", "alpha", "beta", "gamma", "delta", "lives", "in", "paris", "rome"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<eos>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<eos>")
    texts = ["alpha lives in paris", "beta lives in rome rome", "gamma lives in paris paris paris", "delta lives in",
             "alpha lives in rome"]
    return pd.DataFrame({"doc": [0, 1, 2, 3, 0], "text": texts}), tok


def test_every_token_carries_its_documents_id_through_packing_and_epoch_reordering():
    documents, tok = documents_and_tokenizer()
    blocks, owners, segments = document_blocks(documents, tok, block_size=8, seed=0)
    assert blocks.shape == owners.shape and ((blocks == tok.eos_token_id) == (owners == -1)).all()
    first_word = {0: 1, 1: 2, 2: 3, 3: 4}  # each document's paragraphs start with its own name
    data = DocumentBlocks(blocks, owners, segments, seed=0)
    for epoch in (0, 1, 2):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item = data[i]
            ids, doc = item["input_ids"].tolist(), item["doc"].tolist()
            starts = [j for j in range(len(ids)) if j == 0 or ids[j - 1] == tok.eos_token_id]
            for j in starts:
                if doc[j] >= 0:
                    assert ids[j] == first_word[doc[j]]


def tiny_run(tmp_path, trainer_class, owners_too: bool):
    from kcircuits.train.trainer import run_training

    model = random_model(d=16, std=0.05)
    rng = np.random.default_rng(0)
    blocks = rng.integers(1, V, (12, 8))  # [12, 8]
    owners = rng.integers(0, 3, (12, 8))
    data = DocumentBlocks(blocks, owners) if owners_too else BlockDataset(blocks)
    settings = micro_settings(train={"batch_size": 4, "grad_accum": 1})
    run_training(model, data, settings, {"device": "cpu"}, tmp_path / "scratch", 1e-2, epochs=3, threads=1,
                 trainer_class=trainer_class)
    return model


def test_alpha_zero_trains_exactly_as_plain_training(tmp_path):
    m = slot_count(random_model(d=16), 1)
    table = pd.DataFrame({"documents": 3, "allocation": "partitioned", "doc": [0, 1, 2], "slot": [0, 5, 9]})
    allocation = torch.from_numpy(allocation_mask(table, "partitioned", 3, m))
    plain = tiny_run(tmp_path / "plain", None, owners_too=False)
    zero = tiny_run(tmp_path / "zero", memory_trainer(0.0, 1, allocation), owners_too=True)
    guided = tiny_run(tmp_path / "guided", memory_trainer(1.0, 1, allocation), owners_too=True)
    same = [torch.equal(a, b) for a, b in zip(plain.state_dict().values(), zero.state_dict().values())]
    assert all(same)  # bit for bit
    assert not all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), guided.state_dict().values()))


def blocks_and_tokens():
    """Three documents' disjoint blocks of 8 of the hook layer's (1) neurons [3, m], and random token
    ids [12, 8] with their documents [12, 8]."""
    allocation = torch.zeros(3, slot_count(random_model(d=16), 1), dtype=torch.bool)
    for d in range(3):
        allocation[d, d * 8:(d + 1) * 8] = True
    rng = np.random.default_rng(0)
    return allocation, torch.from_numpy(rng.integers(1, V, (12, 8))), torch.from_numpy(rng.integers(0, 3, (12, 8)))


def test_a_positive_alpha_moves_the_activity_into_the_allocation(tmp_path):
    allocation, ids, doc = blocks_and_tokens()

    def mean_share(net):
        with torch.no_grad(), capture_slots(net, 1) as store:
            net.eval()(ids)
        return slot_share(store["hidden"], doc, allocation).mean().item()

    plain = tiny_run(tmp_path / "plain", None, owners_too=False)
    guided = tiny_run(tmp_path / "guided", memory_trainer(2.0, 1, allocation), owners_too=True)
    assert mean_share(guided) > mean_share(plain) + 0.05
