"""Build the causal LM from the `model:` config section (kcircuits.checkpoint.load_model loads one).

Three families share one set of size keys (n_layer, n_embd, n_head, n_positions, dropout):
GPT-2 (learned positions, GELU MLP, tied embeddings -- the study's architecture), GPT-NeoX
(rotary, parallel residual) and Llama (rotary, RMSNorm, SwiGLU). Weights are read and written as
safetensors only, from local files only.
"""
from __future__ import annotations

FAMILIES = ("gpt2", "gpt_neox", "llama")


def _swiglu_width(n_embd: int) -> int:
    """Llama's MLP has three matrices instead of two; 8/3 * n_embd keeps its parameter count equal
    to a 4 * n_embd GELU MLP. Rounded up to a multiple of 16 for efficient matmuls."""
    return -(-(8 * n_embd // 3) // 16) * 16


def mlp_width(model_cfg: dict) -> int:
    """Hidden neurons per MLP layer: 4 x n_embd (GPT-2, GPT-NeoX) or the SwiGLU width (Llama)."""
    return _swiglu_width(model_cfg["n_embd"]) if model_cfg["family"] == "llama" else 4 * model_cfg["n_embd"]


def check_shape(model_cfg: dict) -> None:
    """What the family's attention needs of the size keys (config validation calls this too):
    n_embd splits evenly into n_head heads, and Llama's rotary embedding turns pairs of a head's features."""
    d, h = model_cfg["n_embd"], model_cfg["n_head"]
    if d % h:
        raise ValueError(f"model.n_embd ({d}) must be divisible by model.n_head ({h})")
    if model_cfg["family"] == "llama" and (d // h) % 2:
        raise ValueError(f"model.n_embd / model.n_head ({d} / {h} = {d // h}) must be even for family llama "
                         "(rotary embedding)")


def model_config(model_cfg: dict, tokenizer):
    """A transformers config for `model_cfg`, with the tokenizer's vocabulary and special ids.

    Special ids come from the tokenizer: GPT2Config defaults bos/eos to 50256, which is outside a
    small BPE vocabulary.
    """
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig

    family = model_cfg["family"]
    check_shape(model_cfg)
    ids = dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    p = model_cfg["dropout"]
    if family == "gpt2":
        return GPT2Config(n_layer=model_cfg["n_layer"], n_embd=model_cfg["n_embd"], n_head=model_cfg["n_head"],
                          n_positions=model_cfg["n_positions"], resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, **ids)
    if family == "gpt_neox":
        return GPTNeoXConfig(num_hidden_layers=model_cfg["n_layer"], hidden_size=model_cfg["n_embd"],
                             num_attention_heads=model_cfg["n_head"], intermediate_size=mlp_width(model_cfg),
                             max_position_embeddings=model_cfg["n_positions"], hidden_dropout=p,
                             attention_dropout=p, **ids)
    if family == "llama":
        return LlamaConfig(num_hidden_layers=model_cfg["n_layer"], hidden_size=model_cfg["n_embd"],
                           num_attention_heads=model_cfg["n_head"],
                           intermediate_size=mlp_width(model_cfg),
                           max_position_embeddings=model_cfg["n_positions"], attention_dropout=p, **ids)
    raise ValueError(f"model.family: unknown family {family!r}; choose one of {FAMILIES}")


def build_model(model_cfg: dict, tokenizer, seed: int):
    """A freshly initialised model; the same seed gives the same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    config = model_config(model_cfg, tokenizer)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def check_vocabulary(model, tokenizer) -> None:
    """A model that starts from `model.init` must cover every id the tokenizer can produce."""
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < len(tokenizer):
        raise ValueError(f"model has {rows} embedding rows but the tokenizer has {len(tokenizer)} tokens; "
                         "use the tokenizer the init checkpoint was trained with (tokenizer.kind: pretrained)")


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())
