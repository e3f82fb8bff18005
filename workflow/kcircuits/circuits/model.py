"""An explicit forward over a Hugging Face causal LM's weights in which every node input is visible.

Why not TransformerLens: transformer-lens 3.9 (HookedTransformer) and 4.3 (TransformerBridge) both
resolve beside torch 2.13 (pip dry run), but pull ~30 packages (wandb, datasets, ...); a custom-size
local checkpoint needs a hand-built config plus the family's weight converter; and hook-based
per-edge bookkeeping is what makes the widely used reference implementation slow on a CPU. Here
each family's weights are read once into per-head tensors and the norms and the MLPs' projections and
activations are the model's own modules, so the logits match the Hugging Face model to float rounding
(tests/test_circuits.py, tests/test_forward.py).

`run` is the one forward over the weights: EAP-IG attribution and circuit evaluation call it, and
head decomposition, logit lens and neuron attribution read its named cache (CACHE; an entry is
computed and kept only when asked for, so attribution's hot path does neither).

Two ways to build each backward slot's input (see graph.py for nodes and slots):
  * full model: the residual stream, shared by every slot; hooks.py recovers the gradient through
    each (q/k/v, head) slot separately, and through each MLP and the logits.
  * patched: input(v) = const(v) + sum_u ref_u + sum_u mask[u, v] * (out_u - ref_u) over v's
    upstream nodes u, where ref is the ablation (corrupted run, zeros or means). mask = 1
    everywhere reproduces the full model; mask = 0 everywhere gives the reference run.
const(v) holds the attention output biases, which belong to no node and are never ablated (they do
not depend on the input, so for corrupted patching this is exact; for zero ablation it is the
convention). Position i attends only to <= i, so right-padded batches are exact: each item is
read at its own last position `last`, and padding never reaches real tokens.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..train.model import FAMILIES
from .graph import Graph
from .hooks import accumulate_into, shared_norm_qkv, slot_backward_weights

CACHE = {  # what run(..., cache=names) can return: name -> shape and meaning (full model only)
    "resid": "[L + 1, B, T, d] residual stream: the embeddings, then the stream after each layer",
    "keys": "[L, B, H, T, dh] every head's key vectors (rotated; key bias included; kv heads repeated per head)",
    "values": "[L, B, H, T, dh] every head's value vectors (value bias included; kv heads repeated per head)",
    "attn_last": "[L, B, H, T] attention pattern from each item's last position (0 beyond it)",
    "mlp_hidden": "[L, B, m] MLP hidden activations at each item's last position: after the nonlinearity "
                  "(gated MLPs: the down projection's input)",
}


HiddenEdit = Callable[[torch.Tensor], torch.Tensor]  # [B, m] MLP hidden activations -> [B, m] used instead


@dataclass
class Layer:
    norm_attn: torch.nn.Module
    norm_mlp: torch.nn.Module
    w_qkv: torch.Tensor         # [3, H, d, dh]: x @ w_qkv[s, h] is head h's query/key/value
    b_qkv: torch.Tensor | None  # [3, H, dh]
    w_o: torch.Tensor           # [H, dh, d]: head h writes z_h @ w_o[h]
    b_o: torch.Tensor | None    # [d]
    mlp_in: Callable[[torch.Tensor], torch.Tensor]  # [..., d] -> [..., m]: the MLP's hidden activations
    mlp_out: torch.nn.Module    # [..., m] -> [..., d]: the MLP's down projection
    scale: float

    def __post_init__(self):
        three, H, d, dh = self.w_qkv.shape
        self.w_cat = self.w_qkv.permute(2, 0, 1, 3).reshape(d, three * H * dh)  # [d, 3H*dh]: all slots at once
        self.b_cat = None if self.b_qkv is None else self.b_qkv.reshape(-1)     # [3H*dh]
        self.w_slots = slot_backward_weights(self.w_qkv, self.norm_attn)        # [3H, dh, d], for backward


class CircuitModel:
    """Node-level view of a GPT-2, GPT-NeoX or Llama causal LM (weights frozen, eval mode). `hf_model`: a
    transformers model, or the same-named modules circuits.light builds without transformers (one reader)."""

    def __init__(self, hf_model):
        hf_model.eval()
        for p in hf_model.parameters():
            p.requires_grad_(False)
        self.hf = hf_model
        family = hf_model.config.model_type
        if family not in FAMILIES:
            raise ValueError(f"model family {family!r} is not supported; choose one of {FAMILIES}")
        self.family = family
        getattr(self, f"_read_{family}")(hf_model)
        self.n_layers, self.n_heads = len(self.layers), self.layers[0].w_o.shape[0]
        self.d_model = self.layers[0].w_o.shape[2]
        self.graph = Graph(self.n_layers, self.n_heads, self.parallel)
        # const(slot group): attention output biases summed over the layers each group reads
        zero = torch.zeros_like(self.layers[0].w_o[0, 0])  # [d], on the model's device and dtype
        b_o = [lay.b_o if lay.b_o is not None else zero for lay in self.layers]
        self.bias_before = torch.stack([zero, *b_o]).cumsum(0)  # [L + 1, d]: sum of b_o of layers < l

    # ---- reading each family's weights -----------------------------------------------------------
    def _read_gpt2(self, m):
        cfg, t = m.config, m.transformer
        H = cfg.n_head
        d = cfg.n_embd
        dh = d // H
        self.parallel, self.rotary = False, None
        self.final_norm, self.unembed = t.ln_f, m.get_output_embeddings()
        self._embed = lambda ids: t.wte(ids) + t.wpe(torch.arange(ids.shape[1], device=ids.device))
        self.layers = []
        for i, blk in enumerate(t.h):
            w, b = blk.attn.c_attn.weight, blk.attn.c_attn.bias  # Conv1D: [d, 3d], [3d]; columns (s, h, e)
            scale = dh ** -0.5 if cfg.scale_attn_weights else 1.0
            if cfg.scale_attn_by_inverse_layer_idx:
                scale /= i + 1
            self.layers.append(Layer(
                blk.ln_1, blk.ln_2, w.view(d, 3, H, dh).permute(1, 2, 0, 3).contiguous(),
                b.view(3, H, dh), blk.attn.c_proj.weight.view(H, dh, d), blk.attn.c_proj.bias,
                _mlp_in(blk.mlp.c_fc, blk.mlp.act), blk.mlp.c_proj, scale))  # dropout: identity in eval mode

    def _read_gpt_neox(self, m):
        cfg, t = m.config, m.gpt_neox
        H, d = cfg.num_attention_heads, cfg.hidden_size
        dh = d // H
        self.parallel, self.rotary = bool(cfg.use_parallel_residual), t.rotary_emb
        self.final_norm, self.unembed = t.final_layer_norm, m.get_output_embeddings()
        self._embed = t.embed_in
        self.layers = []
        for lay in t.layers:
            a = lay.attention
            w = a.query_key_value.weight.view(H, 3, dh, d)  # Linear [3d, d]; rows (h, s, e): heads interleaved
            b = a.query_key_value.bias
            self.layers.append(Layer(
                lay.input_layernorm, lay.post_attention_layernorm, w.permute(1, 0, 3, 2).contiguous(),
                None if b is None else b.view(H, 3, dh).permute(1, 0, 2).contiguous(),
                a.dense.weight.t().reshape(H, dh, d), a.dense.bias,
                _mlp_in(lay.mlp.dense_h_to_4h, lay.mlp.act), lay.mlp.dense_4h_to_h, a.scaling))

    def _read_llama(self, m):
        cfg, t = m.config, m.model
        H, d = cfg.num_attention_heads, cfg.hidden_size
        dh = getattr(cfg, "head_dim", None) or d // H
        groups = H // cfg.num_key_value_heads  # grouped-query attention: each kv head serves `groups` heads
        self.parallel, self.rotary = False, t.rotary_emb
        self.final_norm, self.unembed = t.norm, m.get_output_embeddings()
        self._embed = t.embed_tokens

        def per_head(lin, n):  # Linear [n * dh, d] -> [H, d, dh], kv heads repeated per query head
            w = lin.weight.view(n, dh, d).transpose(1, 2).repeat_interleave(H // n, 0)
            b = None if lin.bias is None else lin.bias.view(n, dh).repeat_interleave(H // n, 0)
            return w, b

        self.layers = []
        for lay in t.layers:
            a = lay.self_attn
            parts = [per_head(a.q_proj, H), per_head(a.k_proj, H // groups), per_head(a.v_proj, H // groups)]
            b = None if parts[0][1] is None else torch.stack([p[1] for p in parts])
            self.layers.append(Layer(
                lay.input_layernorm, lay.post_attention_layernorm, torch.stack([p[0] for p in parts]).contiguous(),
                b, a.o_proj.weight.t().reshape(H, dh, d), a.o_proj.bias,
                _mlp_in(lay.mlp.up_proj, lay.mlp.act_fn, lay.mlp.gate_proj), lay.mlp.down_proj, a.scaling))

    @property
    def device(self) -> torch.device:
        """Where the weights are: every tensor a computation creates is created here."""
        return self.layers[0].w_o.device

    def precision(self, dtype: str = "float32"):
        """Where attribution may trade exactness for speed: a context in which matrix products run in
        `dtype` (float32: exactly as without it; bfloat16 / float16: torch.autocast on the model's
        device). Weights stay float32 and scores are accumulated in float32 or wider."""
        return torch.autocast(self.device.type, dtype=getattr(torch, dtype), enabled=dtype != "float32")

    # ---- pieces ------------------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, T] token ids -> [B, T, d], the input node's output (token + learned position embeddings)."""
        return self._embed(ids)

    def _attention(self, layer: Layer, qkv: torch.Tensor, rope, kept: _Cache | None) -> torch.Tensor:
        """qkv [B, T, 3, H, dh] -> z [B, H, T, dh]."""
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, dh]
        if rope is not None:
            q, k = _apply_rope(q, rope), _apply_rope(k, rope)
        if kept is not None:
            kept.add("keys", lambda: k)
            kept.add("values", lambda: v)
            kept.add("attn_last", lambda: _last_pattern(q, k, kept.last, layer.scale))
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=layer.scale)

    def _head_outputs(self, layer: Layer, z: torch.Tensor) -> torch.Tensor:
        """z [B, H, T, dh] -> each head's write to the residual stream [H, B, T, d] (no bias)."""
        B, H, T, dh = z.shape
        return torch.bmm(z.transpose(0, 1).reshape(H, B * T, dh), layer.w_o).view(H, B, T, -1)

    def _mlp(self, i: int, layer: Layer, x: torch.Tensor, last: torch.Tensor, kept: _Cache | None,
             replace: Mapping[int, HiddenEdit]) -> torch.Tensor:
        """Layer i's MLP slot input x [B, T, 1, d] -> its write [B, T, d] (see run: replace_mlp_hidden)."""
        h = layer.mlp_in(layer.norm_mlp(x))  # [B, T, 1, m]
        if i in replace:  # out of place: gradients reach what the edit puts in
            rows = torch.arange(x.shape[0], device=x.device)
            h = h.index_put((rows, last), replace[i](h[rows, last, 0])[:, None])
        if kept is not None:
            kept.add("mlp_hidden", lambda: h[torch.arange(x.shape[0], device=x.device), last, 0])  # [B, m]
        return layer.mlp_out(h)[:, :, 0]

    def _logits(self, x: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """x [B, T, d] -> logits at each item's last position [B, V] (only those are ever read)."""
        return self.unembed(self.final_norm(x[torch.arange(x.shape[0], device=x.device), last]))

    # ---- the forward ---------------------------------------------------------------------------------
    def run(self, ids: torch.Tensor | None, last: torch.Tensor, *, embeds: torch.Tensor | None = None,
            mask: torch.Tensor | None = None, reference: torch.Tensor | None = None,
            record: bool = False, grads: torch.Tensor | None = None, cache: Iterable[str] | str = (),
            replace_mlp_hidden: Mapping[int, HiddenEdit] | None = None):
        """One forward pass; returns last-position logits [B, V], and node outputs if `record` or the
        named cache entries if `cache`: (logits, outs) or (logits, {name: tensor}).

        ids [B, T] (or embeds [B, T, d], the input node's output, e.g. an interpolated one);
        last [B]: index of each item's last real token.
        mask [n_fwd, n_bwd]: patch edges (1 = keep, 0 = replace by `reference`); None = full model.
        reference [n_fwd, B or 1, T, d]: ablation activations per node; None = zeros.
        record: also return node outputs [n_fwd, B, T, d].
        grads [n_bwd, B, T, d]: a backward pass through this forward adds each slot input's gradient here.
        cache: CACHE entries to compute and return (full model only, so not with `mask` or `record`).
        replace_mlp_hidden {layer: edit}: at each item's last position, that layer's MLP hidden
            activations h [B, m] (as CACHE["mlp_hidden"]) become edit(h) [B, m], computed in this
            forward from the layers before: e.g. alpha * clean activations with alpha over the batch
            (neuron attribution; gradients reach what edit returns), or h with some neurons zeroed or
            doubled (suppress / amplify, at several layers at once). Everything else runs as usual.
        """
        x0 = self.embed(ids) if embeds is None else embeds  # [B, T, d]
        B, T, _ = x0.shape
        rope = self._rope(x0, T)
        replace_mlp_hidden = dict(replace_mlp_hidden or {})
        outside = sorted(i for i in replace_mlp_hidden if not 0 <= i < self.n_layers)
        if outside:
            raise ValueError(f"replace_mlp_hidden: layers {outside} of a {self.n_layers}-layer model")
        inputs = _SlotInputs(self, x0, mask, reference, grads)
        kept = _Cache(cache, last, mask is not None or record) if cache else None
        resid, outs = x0, [x0[None]]
        for i, layer in enumerate(self.layers):
            if kept is not None:
                kept.add("resid", lambda: resid)
            z = self._attention(layer, inputs.qkv(layer, resid, i), rope, kept)  # [B, H, T, dh]
            if inputs.patched or record:
                heads = self._head_outputs(layer, z)  # [H, B, T, d]
                attn_out = heads.sum(0)
                inputs.wrote(heads, self.graph.head_node(i, 0))
            else:  # one matmul over the concatenated heads, as the model itself does
                attn_out = z.transpose(1, 2).reshape(B, T, -1) @ layer.w_o.flatten(0, 1)
            if layer.b_o is not None:
                attn_out = attn_out + layer.b_o
            mid = resid if self.parallel else resid + attn_out
            x_mlp = inputs.next(mid, 1, i if self.parallel else i + 1)  # [B, T, 1, d]
            mlp_out = self._mlp(i, layer, x_mlp, last, kept, replace_mlp_hidden)  # [B, T, d]
            resid = mid + mlp_out if not self.parallel else resid + attn_out + mlp_out
            inputs.wrote(mlp_out[None], self.graph.mlp_node(i))
            if record:
                outs += [heads, mlp_out[None]]
        logits = self._logits(inputs.next(resid, 1, self.n_layers)[:, :, 0], last)
        if record:
            return logits, torch.cat(outs)
        if kept is None:
            return logits
        kept.add("resid", lambda: resid)
        return logits, kept.result()

    def run_last(self, entries: Mapping[int, tuple[torch.Tensor, torch.Tensor]], last: torch.Tensor,
                 keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The rest of a forward for the last position only, when only that position changed from a
        clean run (cache "keys", "values" of prompts [P]): earlier positions are the clean ones, so
        each row attends to their cached keys and values and to its own. Returns logits [R, V].

        entries {layer l: (x [R_l, d], prompt [R_l])}: rows whose last-position residual stream after
        layer l is x (prompt: the clean prompt of each row); they join at layer l + 1, so rows of
        several layers share one forward. Logits rows: the entries' rows by ascending layer. last [P].
        """
        device = last.device
        x, prompt = torch.empty(0, self.d_model, device=device), torch.empty(0, dtype=torch.long, device=device)
        for i in range(min(entries), self.n_layers + 1):
            if i - 1 in entries:  # rows whose stream after layer i - 1 is given join here
                x, prompt = torch.cat([x, entries[i - 1][0]]), torch.cat([prompt, entries[i - 1][1]])
            if i < self.n_layers:
                x = self._layer_last(self.layers[i], x, last[prompt], keys[i, prompt], values[i, prompt])
        return self.unembed(self.final_norm(x))

    def _layer_last(self, layer: Layer, x: torch.Tensor, last: torch.Tensor, keys: torch.Tensor,
                    values: torch.Tensor) -> torch.Tensor:
        """One layer at the last position: x [R, d] -> [R, d]; keys, values [R, H, T, dh] clean."""
        R, H, T, dh = keys.shape
        qkv = layer.norm_attn(x) @ layer.w_cat
        q, k, v = (qkv if layer.b_cat is None else qkv + layer.b_cat).view(R, 3, H, dh).unbind(1)  # [R, H, dh]
        if self.rotary is not None:
            cos, sin = (r[0, 0][last][:, None, :] for r in self._rope(x[:, None], T))  # [R, 1, r]
            q, k = _apply_rope(q, (cos, sin)), _apply_rope(k, (cos, sin))
        past = torch.arange(T, device=x.device)[None, :] < last[:, None]  # [R, T]: earlier positions, clean
        scores = torch.einsum("rhe,rhte->rht", q, keys).masked_fill(~past[:, None, :], -math.inf)
        own = (q * k).sum(-1, keepdim=True)  # [R, H, 1]
        w = torch.softmax(torch.cat([scores, own], -1) * layer.scale, -1)  # [R, H, T + 1]
        z = torch.einsum("rht,rhte->rhe", w[..., :T], values) + w[..., T:] * v  # [R, H, dh]
        attn = z.reshape(R, H * dh) @ layer.w_o.flatten(0, 1)
        if layer.b_o is not None:
            attn = attn + layer.b_o
        if self.parallel:
            return x + attn + layer.mlp_out(layer.mlp_in(layer.norm_mlp(x)))
        mid = x + attn
        return mid + layer.mlp_out(layer.mlp_in(layer.norm_mlp(mid)))

    def _workspace(self, *shape: int) -> torch.Tensor:
        """Scratch [2, 3H, B, T, d] for the per-slot backward, kept between calls (see hooks.py)."""
        if getattr(self, "_work", None) is None or self._work.shape[1:] != shape:
            self._work = torch.empty(2, *shape, device=self.device)
        return self._work

    def _rope(self, x: torch.Tensor, T: int):
        if self.rotary is None:
            return None
        cos, sin = self.rotary(x, torch.arange(T, device=x.device)[None])  # [1, T, rotary_dim] each
        return cos[:, None], sin[:, None]  # broadcast over heads: [1, 1, T, rotary_dim]


class _SlotInputs:
    """Each backward slot group's input, in forward order (graph.groups; see the module docstring).

    Full model: the residual stream itself, a view per group (so each group gets its own gradient).
    Patched: const + sum_u ref_u + sum_u mask[u, v] * (out_u - ref_u) over the group's upstream nodes,
    from the node outputs reported through `wrote`. With grads [n_bwd, B, T, d], a backward pass adds
    each slot input's gradient there.
    """

    def __init__(self, model: CircuitModel, x0: torch.Tensor, mask, reference, grads):
        self.model, self.grads, self.groups = model, grads, iter(model.graph.groups)
        self.patched, self.reference, self.work = mask is not None, reference, None
        if self.patched:
            self.mask = mask.to(x0.device, x0.dtype)  # a circuit's edges may live on the CPU
            self.ref_upto = None if reference is None else reference.cumsum(0)  # [n_fwd, B|1, T, d]: sum_{u<=i} ref_u
            self.diffs = [x0[None] if reference is None else x0[None] - reference[:1]]  # out_u - ref_u, per group
        elif grads is not None:
            self.work = model._workspace(3 * model.n_heads, *x0.shape)

    def next(self, resid: torch.Tensor, n_slots: int, n_biases: int) -> torch.Tensor:
        """The next group's inputs [B, T, n_slots, d]; resid [B, T, d] is the full model's stream and
        n_biases the number of layers whose attention output bias (const) the group reads."""
        start, end, n_up = next(self.groups)
        B, T, d = resid.shape
        if not self.patched:
            x = resid[:, :, None, :].expand(B, T, n_slots, d)  # a view: its own gradient
        else:
            diff = torch.cat(self.diffs) if len(self.diffs) > 1 else self.diffs[0]  # [n_seen, B, T, d]
            self.diffs[:] = [diff]
            x = torch.einsum("ubtd,us->btsd", diff[:n_up], self.mask[:n_up, start:end])
            x = x + self.model.bias_before[n_biases]
            if self.ref_upto is not None:
                x = x + self.ref_upto[n_up - 1][:, :, None, :]
        if self.grads is not None and x.requires_grad:
            x.register_hook(accumulate_into(self.grads[start:end]))
        return x

    def qkv(self, layer: Layer, resid: torch.Tensor, i: int) -> torch.Tensor:
        """Layer i's queries, keys and values [B, T, 3, H, dh] from its 3H slot inputs."""
        B, T, d = resid.shape
        H = self.model.n_heads
        if self.patched:  # every q/k/v input is its own sum of upstream outputs
            x = self.next(resid, 3 * H, i).view(B, T, 3, H, d)
            qkv = torch.einsum("btshd,shde->btshe", layer.norm_attn(x), layer.w_qkv)
            return qkv if layer.b_qkv is None else qkv + layer.b_qkv
        start, end, _ = next(self.groups)  # one shared input; per-slot gradients come from hooks.shared_norm_qkv
        grads = None if self.grads is None else self.grads[start:end]
        qkv = shared_norm_qkv(resid, layer.norm_attn, layer.w_cat, layer.b_cat, layer.w_slots, grads, self.work)
        return qkv.view(B, T, 3, H, -1)

    def wrote(self, out: torch.Tensor, first: int) -> None:
        """Forward nodes first .. first + n - 1 wrote out [n, B, T, d] (patched runs keep out - ref)."""
        if self.patched:
            self.diffs.append(out if self.reference is None else out - self.reference[first:first + len(out)])


class _Cache:
    """The requested CACHE entries of one run, collected layer by layer; nothing else is computed."""

    def __init__(self, names: Iterable[str] | str, last: torch.Tensor, patched_or_recording: bool):
        names = [names] if isinstance(names, str) else list(names)
        unknown = sorted(set(names) - set(CACHE))
        if unknown:
            raise ValueError(f"unknown cache entries {unknown}; choose from {sorted(CACHE)}")
        if patched_or_recording:
            raise ValueError("the cache is the full model's forward: run it without mask and record")
        self.last, self.parts = last, {name: [] for name in names}

    def add(self, name: str, value: Callable[[], torch.Tensor]) -> None:
        if name in self.parts:
            self.parts[name].append(value())

    def result(self) -> dict[str, torch.Tensor]:
        return {name: torch.stack(parts) for name, parts in self.parts.items()}


def _mlp_in(proj: torch.nn.Module, act, gate: torch.nn.Module | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """An MLP's hidden activations, in the model's own order of operations: act(proj(x)), or
    act(gate(x)) * proj(x) for a gated (Llama) MLP."""
    if gate is None:
        return lambda x: act(proj(x))
    return lambda x: act(gate(x)) * proj(x)


def _last_pattern(q: torch.Tensor, k: torch.Tensor, last: torch.Tensor, scale: float) -> torch.Tensor:
    """q, k [B, H, T, dh] (rotated) -> attention weights from each item's last position [B, H, T]."""
    B, _, T, _ = q.shape
    future = torch.arange(T, device=q.device)[None, :] > last[:, None]  # [B, T]: padding after the last token
    scores = torch.einsum("bhe,bhte->bht", q[torch.arange(B, device=q.device), :, last], k) * scale  # [B, H, T]
    return scores.masked_fill(future[:, None, :], -math.inf).softmax(-1)


def _apply_rope(x: torch.Tensor, rope) -> torch.Tensor:
    """Rotary embedding on the first rotary_dim features (all of them unless partial, as in NeoX)."""
    cos, sin = rope
    r = cos.shape[-1]
    rot, rest = x[..., :r], x[..., r:]
    half = r // 2
    rotated = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
    return torch.cat((rot * cos + rotated * sin, rest), dim=-1)
