"""CircuitModel.run's named cache and its MLP hook point (kcircuits.circuits.model), checked against the
Hugging Face models themselves. Tiny random models; one thread (the machine is shared)."""
from __future__ import annotations

import pytest
import torch

from helpers import V, down_proj, hf_with_last_hidden, random_model
from kcircuits.circuits.model import CACHE, CircuitModel

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = [("gpt2", {}), ("gpt_neox", {}), ("gpt_neox", {"use_parallel_residual": False}),
            ("llama", {"num_key_value_heads": 2})]
IDS = torch.randint(1, V, (3, 7), generator=torch.Generator().manual_seed(0))  # [B, T]
LAST = torch.tensor([6, 4, 2])  # items 2 and 3 are right-padded
LABEL = torch.tensor([5, 17, 40])


@pytest.mark.parametrize("family,extra", FAMILIES)
def test_cache_entries_are_the_hf_models_own(family, extra):
    hf = random_model(family, std=0.3, **extra)
    model = CircuitModel(hf)
    L = model.n_layers
    with torch.no_grad():
        logits, cache = model.run(IDS, LAST, cache=list(CACHE))
    assert set(cache) == set(CACHE) and torch.equal(logits, model.run(IDS, LAST))
    assert cache["resid"].shape == (L + 1, 3, 7, model.d_model) and cache["attn_last"].shape == (L, 3, 4, 7)
    hidden = {}
    hooks = [down_proj(hf, layer)
             .register_forward_pre_hook(lambda m, args, layer=layer: hidden.update({layer: args[0]}))
             for layer in range(L)]
    hf.set_attn_implementation("eager")  # so that it returns its attention patterns
    for i in range(3):
        with torch.no_grad():
            res = hf(IDS[i:i + 1, : LAST[i] + 1], output_hidden_states=True, output_attentions=True)
        torch.testing.assert_close(logits[i], res.logits[0, -1], atol=1e-5, rtol=1e-5)
        for layer in range(L):  # hidden_states[l]: the stream before block l (the last one is normed)
            torch.testing.assert_close(cache["resid"][layer, i, : LAST[i] + 1], res.hidden_states[layer][0])
            torch.testing.assert_close(cache["mlp_hidden"][layer, i], hidden[layer][0, -1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(cache["attn_last"][layer, i, :, : LAST[i] + 1], res.attentions[layer][0, :, -1])
        torch.testing.assert_close(model.final_norm(cache["resid"][-1, i, : LAST[i] + 1]), res.hidden_states[-1][0])
    assert torch.all(cache["attn_last"][:, 2, :, 3:] == 0)  # padding gets no attention
    for h in hooks:
        h.remove()


@pytest.mark.parametrize("family,extra", FAMILIES)
def test_replacing_mlp_hidden_activations(family, extra):
    """Unchanged activations change nothing; zeros zero-ablate the layer's hidden units at the last
    position (as a pre-hook on the HF model's down projection does)."""
    hf = random_model(family, std=0.3, **extra)
    model = CircuitModel(hf)
    with torch.no_grad():
        logits, cache = model.run(IDS, LAST, cache="mlp_hidden")
        clean = cache["mlp_hidden"][0]  # [B, m]
        assert torch.equal(model.run(IDS, LAST, replace_mlp_hidden={0: lambda h: clean.clone()}), logits)
        full = model.graph.valid.float()  # patched runs too (all edges: the model up to float rounding)
        torch.testing.assert_close(model.run(IDS, LAST, mask=full, replace_mlp_hidden={0: lambda h: clean}), logits)
        ablated = model.run(IDS, LAST, replace_mlp_hidden={0: torch.zeros_like})
        assert (ablated - logits).abs().max() > 1e-2  # the ablation matters
        for i in range(3):
            expected = hf_with_last_hidden(hf, IDS[i, : LAST[i] + 1], 0, torch.zeros_like(clean[i]))
            torch.testing.assert_close(ablated[i], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family,extra", FAMILIES)
def test_gradients_reach_the_scaled_hidden_activations(family, extra):
    """Neuron attribution's use: one prompt, alpha from 0 to 1 over the batch, a = alpha * clean
    activations; d(target logit)/da equals the HF model's own gradient at each alpha."""
    hf = random_model(family, std=0.3, **extra)
    model = CircuitModel(hf)
    alphas = torch.linspace(0, 1, 4)
    ids, last = IDS[1:2].expand(4, -1), LAST[1:2].expand(4)
    with torch.no_grad():
        clean_logits, cache = model.run(ids[:1], last[:1], cache="mlp_hidden")
    scaled = (alphas[:, None] * cache["mlp_hidden"][0]).requires_grad_(True)  # [4, m]
    logits = model.run(ids, last, replace_mlp_hidden={0: lambda h: scaled})
    logits[:, LABEL[1]].sum().backward()
    torch.testing.assert_close(logits[-1], clean_logits[0])
    assert scaled.grad.abs().sum() > 0
    for k in range(4):
        a = scaled[k].detach().clone().requires_grad_(True)
        hf_with_last_hidden(hf, ids[k, : last[k] + 1], 0, a)[LABEL[1]].backward()
        torch.testing.assert_close(scaled.grad[k], a.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family,extra", FAMILIES)
def test_the_last_position_alone_continues_a_clean_run_exactly(family, extra):
    """run_last: rows whose last-position stream after layer l changed (here: the MLP's hidden units
    replaced), continued from the clean keys and values, give the logits of the full forward with
    that replacement; rows of several layers in one call, in layer order."""
    model = CircuitModel(random_model(family, layers=3, std=0.3, **extra))
    with torch.no_grad():
        _, c = model.run(IDS, LAST, cache=("resid", "keys", "values", "mlp_hidden"))
        rows = torch.arange(len(IDS))
        entries, expected = {}, []
        for layer in (0, 2, 1):
            new = torch.randn(c["mlp_hidden"].shape[1:], generator=torch.Generator().manual_seed(layer))  # [B, m]
            mlp = model.layers[layer].mlp_out
            after = c["resid"][layer + 1, rows, LAST] - mlp(c["mlp_hidden"][layer]) + mlp(new)  # [B, d]
            entries[layer] = (after, rows)
            expected.append((layer, model.run(IDS, LAST, replace_mlp_hidden={layer: lambda h, a=new: a})))
        logits = model.run_last(entries, LAST, c["keys"], c["values"])  # [3B, V]: by ascending layer
    torch.testing.assert_close(logits, torch.cat([e for _, e in sorted(expected, key=lambda e: e[0])]),
                               atol=1e-5, rtol=1e-5)


def test_cache_requests_are_checked():
    model = CircuitModel(random_model())
    with pytest.raises(ValueError, match="unknown cache entries"):
        model.run(IDS, LAST, cache=["resid", "queries"])
    with pytest.raises(ValueError, match="full model"):
        model.run(IDS, LAST, cache="resid", mask=model.graph.valid.float())
    with pytest.raises(ValueError, match="full model"):
        model.run(IDS, LAST, cache="resid", record=True)
    with pytest.raises(ValueError, match=r"layers \[2\]"):
        model.run(IDS, LAST, replace_mlp_hidden={2: torch.zeros_like})
