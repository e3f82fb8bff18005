"""The modules CircuitModel reads, built straight from a model folder's config.json and safetensors
weights, without transformers' model classes.

Written by hand, for analysis loading only (`checkpoint.load_model(..., hf_forward=False)`): importing
transformers' modeling stack (modeling_utils pulls torch.distributed.tensor, torch._dynamo, sympy,
scipy, ...) costs about 3 s per process, more than loading an analysis job's checkpoint needs.
CircuitModel runs its own forward over the weights and uses a model only for its embeddings, norms,
MLP projections and activations, unembedding and rotary embedding. This module builds exactly those,
under transformers' attribute and parameter names (so CircuitModel reads either source with one code
path, and the weights load by their own keys) and with transformers 5's forward code, op for op:
GPT-2's Conv1D is torch.addmm(bias, x.view(-1, nx), weight); Llama's RMSNorm and the GPT-NeoX / Llama
rotary embedding are copied from transformers; LayerNorm, Linear, Embedding and the activations are
torch's own modules, as in transformers (GPT-2's tanh-GELU is torch's fused kernel, which
`checkpoint.fuse_tanh_gelu` swaps in for every analysis). The results are bit-identical to the
transformers load (tests/test_light.py). The attention, dropout and generation code are not built:
the model has no forward of its own, so a stage that calls the Hugging Face model loads it through
transformers.

A folder this module cannot build exactly as transformers would (weights other than float32, a RoPE
scaling type, an activation not listed, a legacy config spelling, a key missing or unexpected)
raises Unsupported, and load_model loads it through transformers instead.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {  # config name -> what transformers runs, as analysis loads it
    "gelu_new": lambda: nn.GELU(approximate="tanh"),  # after checkpoint.fuse_tanh_gelu
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),  # GELUTanh: F.gelu(x, approximate="tanh")
    "gelu": nn.GELU,  # GELUActivation: F.gelu
    "silu": nn.SiLU,  # SiLUActivation: F.silu
    "swish": nn.SiLU,
    "relu": nn.ReLU,
}
RENAMED = {"gpt_neox": ("embed_out.", "lm_head.")}
"""family -> (file key prefix, module name prefix): transformers 5 saves GPT-NeoX's lm_head as embed_out
(conversion_mapping.py, GPTNeoXForCausalLM) and renames it back when loading."""
LEGACY_ROPE_KEYS = ("rope_scaling", "rope_theta", "partial_rotary_factor", "rotary_pct", "rotary_emb_base")
"""Top-level config keys transformers folds into rope_parameters by rules of its own: left to it."""


class Unsupported(ValueError):
    """A model folder this module cannot build exactly as transformers would (the message says why)."""


class Uninitialised:
    """A torch module class left uninitialised: its weights are loaded right after (torch's initialisers
    on a meta device would import torch._dynamo, seconds; on the CPU they would fill every weight once
    more)."""

    def reset_parameters(self) -> None:
        pass


class Linear(Uninitialised, nn.Linear):
    """torch's Linear, left uninitialised."""


class LayerNorm(Uninitialised, nn.LayerNorm):
    """torch's LayerNorm, left uninitialised."""


class Embedding(Uninitialised, nn.Embedding):
    """torch's Embedding, left uninitialised."""


class Conv1D(nn.Module):
    """GPT-2's linear layer with transposed weight [nx, nf] and bias [nf]; transformers' forward."""

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.empty(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., nx] -> [..., nf]
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class RMSNorm(nn.Module):
    """Llama's RMSNorm (LlamaRMSNorm), forward as transformers writes it."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:  # [..., d] -> [..., d]
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class RotaryEmbedding(nn.Module):
    """GPT-NeoX's and Llama's default rotary embedding (rope_type "default"), as transformers writes it:
    forward(x, position_ids [1, T]) -> cos, sin [1, T, rotary_dim] in x's dtype."""

    def __init__(self, head_dim: int, base: float, partial_rotary_factor: float = 1.0):
        super().__init__()
        dim = int(head_dim * partial_rotary_factor)
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))  # [rotary_dim / 2]
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.attention_scaling = 1.0  # unused by this type of RoPE

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor):
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


class AnalysisModel(nn.Module):
    """The modules CircuitModel reads of one causal LM, under transformers' names (`config`: config.json's
    keys as attributes). It has no forward: analysis runs CircuitModel's."""

    def __init__(self, config: dict, base: str, body: nn.Module, lm_head: nn.Linear):
        super().__init__()
        self.config = SimpleNamespace(**config)
        self.base_name = base
        setattr(self, base, body)  # transformer (GPT-2), gpt_neox or model (Llama)
        self.lm_head = lm_head

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_input_embeddings(self) -> nn.Embedding:
        body = getattr(self, self.base_name)
        return getattr(body, {"transformer": "wte", "gpt_neox": "embed_in", "model": "embed_tokens"}[self.base_name])

    def forward(self, *args, **kwargs):
        raise TypeError("this model was loaded for analysis only (CircuitModel), without transformers' forward; "
                        "load it with hf_forward=True to call it")


def _module(**children) -> nn.Module:
    """A plain container module with the given submodules and attributes."""
    m = nn.Module()
    for name, child in children.items():
        setattr(m, name, child)
    return m


def _get(config: dict, *keys: str) -> list:
    missing = [k for k in keys if k not in config]
    if missing:
        raise Unsupported(f"config.json has no {missing}")
    return [config[k] for k in keys]


def _activation(name: str) -> Callable[[], nn.Module]:
    if name not in ACTIVATIONS:
        raise Unsupported(f"activation {name!r}")
    return ACTIVATIONS[name]


def _rope(config: dict, *keys: str) -> list:
    """rope_parameters entries of a config in transformers 5's own spelling (flat, default type)."""
    legacy = [k for k in LEGACY_ROPE_KEYS if k in config]
    rope = config.get("rope_parameters")
    if legacy or not isinstance(rope, dict) or rope.get("rope_type") != "default":
        raise Unsupported(f"rotary settings {rope!r} (legacy keys {legacy})")
    return _get(rope, *keys)


# ---- each family's modules, as transformers names them (weights uninitialised until loaded) -----------
def _gpt2(c: dict) -> tuple[str, nn.Module, int]:
    L, d, H, m, V, P, eps, act = _get(c, "n_layer", "n_embd", "n_head", "n_inner", "vocab_size", "n_positions",
                                      "layer_norm_epsilon", "activation_function")
    _get(c, "scale_attn_weights", "scale_attn_by_inverse_layer_idx")  # CircuitModel reads them
    if c.get("add_cross_attention"):
        raise Unsupported("GPT-2 with cross-attention")
    m, act = m or 4 * d, _activation(act)
    blocks = [_module(ln_1=LayerNorm(d, eps=eps), ln_2=LayerNorm(d, eps=eps),
                      attn=_module(c_attn=Conv1D(3 * d, d), c_proj=Conv1D(d, d)),
                      mlp=_module(c_fc=Conv1D(m, d), c_proj=Conv1D(d, m), act=act())) for _ in range(L)]
    body = _module(wte=Embedding(V, d), wpe=Embedding(P, d), h=nn.ModuleList(blocks), ln_f=LayerNorm(d, eps=eps))
    return "transformer", body, d


def _gpt_neox(c: dict) -> tuple[str, nn.Module, int]:
    L, d, H, m, V, eps, act, bias = _get(c, "num_hidden_layers", "hidden_size", "num_attention_heads",
                                         "intermediate_size", "vocab_size", "layer_norm_eps", "hidden_act",
                                         "attention_bias")
    _get(c, "use_parallel_residual")  # CircuitModel reads it
    theta, partial = _rope(c, "rope_theta", "partial_rotary_factor")
    act = _activation(act)

    def attention():
        a = _module(query_key_value=Linear(d, 3 * d, bias=bias), dense=Linear(d, d, bias=bias))
        a.scaling = (d // H) ** -0.5  # GPTNeoXAttention: head_size ** -0.5
        return a

    layers = [_module(input_layernorm=LayerNorm(d, eps=eps), post_attention_layernorm=LayerNorm(d, eps=eps),
                      attention=attention(),
                      mlp=_module(dense_h_to_4h=Linear(d, m), dense_4h_to_h=Linear(m, d), act=act()))
              for _ in range(L)]
    body = _module(embed_in=Embedding(V, d), layers=nn.ModuleList(layers),
                   final_layer_norm=LayerNorm(d, eps=eps))
    body.rotary_emb = RotaryEmbedding(c.get("head_dim") or d // H, theta, partial)  # GPTNeoXRotaryEmbedding
    return "gpt_neox", body, d


def _llama(c: dict) -> tuple[str, nn.Module, int]:
    L, d, H, m, V, eps, act, bias, mlp_bias = _get(c, "num_hidden_layers", "hidden_size", "num_attention_heads",
                                                   "intermediate_size", "vocab_size", "rms_norm_eps", "hidden_act",
                                                   "attention_bias", "mlp_bias")
    dh = c.get("head_dim") or d // H  # LlamaConfig.__post_init__ fills both
    kv = c.get("num_key_value_heads") or H
    c.update(head_dim=dh, num_key_value_heads=kv)
    (theta,) = _rope(c, "rope_theta")
    act = _activation(act)

    def attention():
        a = _module(q_proj=Linear(d, H * dh, bias=bias), k_proj=Linear(d, kv * dh, bias=bias),
                    v_proj=Linear(d, kv * dh, bias=bias), o_proj=Linear(H * dh, d, bias=bias))
        a.scaling = dh ** -0.5  # LlamaAttention: head_dim ** -0.5
        return a

    layers = [_module(input_layernorm=RMSNorm(d, eps), post_attention_layernorm=RMSNorm(d, eps),
                      self_attn=attention(),
                      mlp=_module(gate_proj=Linear(d, m, bias=mlp_bias), up_proj=Linear(d, m, bias=mlp_bias),
                                  down_proj=Linear(m, d, bias=mlp_bias), act_fn=act()))
              for _ in range(L)]
    body = _module(embed_tokens=Embedding(V, d, c.get("pad_token_id")), layers=nn.ModuleList(layers),
                   norm=RMSNorm(d, eps))
    body.rotary_emb = RotaryEmbedding(dh, theta)  # LlamaRotaryEmbedding (no partial rotation)
    return "model", body, d


BUILDERS = {"gpt2": _gpt2, "gpt_neox": _gpt_neox, "llama": _llama}


# ---- loading -------------------------------------------------------------------------------------------
def analysis_model(config: dict, files: list[Path]) -> AnalysisModel:
    """The modules CircuitModel reads, with the weights of `files` (a folder's safetensors), on the CPU
    in eval mode; Unsupported where transformers would build something else (module docstring)."""
    family = config.get("model_type")
    if family not in BUILDERS:
        raise Unsupported(f"model_type {family!r}")
    declared = config.get("dtype", config.get("torch_dtype"))
    if declared not in (None, "float32") or "quantization_config" in config:
        raise Unsupported(f"dtype {declared!r}" if declared not in (None, "float32") else "a quantized model")
    config = dict(config)
    base, body, d = BUILDERS[family](config)
    lm_head = Linear(d, config["vocab_size"], bias=False)
    model = AnalysisModel(config, base, body, lm_head)
    tensors = _read_tensors(files)
    if family in RENAMED:
        saved, name = RENAMED[family]
        tensors = {name + k[len(saved):] if k.startswith(saved) else k: t for k, t in tensors.items()}
    _load_weights(model, tensors, bool(_get(config, "tie_word_embeddings")[0]))
    return model.eval()


def _read_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    """Every tensor of the weights files, read as transformers 5 reads them (memory-mapped, sliced whole),
    so that they lie in memory as its parameters do."""
    from safetensors import safe_open

    tensors = {}
    for path in files:
        with safe_open(str(path), framework="pt", device="cpu", backend="mmap") as f:
            tensors.update({key: f.get_slice(key)[...] for key in f.keys()})
    odd = sorted({str(t.dtype) for t in tensors.values()} - {str(torch.float32)})
    if odd:
        raise Unsupported(f"weights of dtype {odd}")
    return tensors


def _load_weights(model: AnalysisModel, tensors: dict[str, torch.Tensor], tied: bool) -> None:
    """Every parameter from its own key; lm_head is the input embedding's when tied, as in transformers."""
    if tied and "lm_head.weight" in tensors:
        raise Unsupported("tied embeddings with an lm_head.weight of their own")
    try:
        missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    except RuntimeError as err:  # a shape that does not match config.json
        raise Unsupported(str(err).splitlines()[0]) from err
    if tied:
        model.lm_head.weight = model.get_input_embeddings().weight
        missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise Unsupported(f"weights missing {missing[:3]}, unexpected {unexpected[:3]}")
