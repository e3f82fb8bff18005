"""How the gradient at every backward slot's input is obtained during attribution.

In the full model all of a layer's query/key/value inputs are the same residual stream x, but EAP
needs the gradient that reaches x through each (q/k/v, head) slot *separately*. Expanding x into
3H copies and letting autograd differentiate a norm per copy works, but on a CPU it spends more time
normalising and permuting copies than the model spends on its matmuls. `shared_norm_qkv` instead
computes norm(x) @ W once, as the model does, and in the backward pass turns the q/k/v gradient into
per-slot input gradients directly: one batched matmul per layer, then the norm's backward in closed
form (its statistics are shared by all slots), written into the gradient buffer in its own layout.

MLP and logits slots have one input each; a tensor hook on a view of x (`accumulate_into`) suffices.
"""
from __future__ import annotations

import torch


def accumulate_into(buffer: torch.Tensor):
    """A tensor hook adding a slot group's gradient [B, T, n, d] into buffer [n, B, T, d]."""
    def hook(grad: torch.Tensor) -> None:  # returning None leaves the gradient itself unchanged
        buffer.add_(grad.permute(2, 0, 1, 3))
    return hook


def norm_kind(norm: torch.nn.Module) -> tuple[str, float]:
    """('layer' or 'rms', epsilon) of a model's pre-attention norm."""
    if isinstance(norm, torch.nn.LayerNorm):
        return "layer", norm.eps
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    if eps is None or getattr(norm, "bias", None) is not None:
        raise TypeError(f"unsupported norm {type(norm).__name__}: expected LayerNorm or an RMSNorm")
    return "rms", eps


def slot_backward_weights(w_qkv: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """[3, H, d, dh] projection -> [3H, dh, d] weights that map a slot's q/k/v gradient straight to
    the gradient at the norm's *input*, up to the per-token terms (see _SharedNormQKV.backward):
    scaled by the norm's weight and, for LayerNorm, with the mean over features already removed."""
    three, H, d, dh = w_qkv.shape
    gamma = getattr(norm, "weight", None)
    w = (w_qkv if gamma is None else w_qkv * gamma[:, None]).reshape(three * H, d, dh).transpose(1, 2)
    if norm_kind(norm)[0] == "layer":
        w = w - w.mean(-1, keepdim=True)
    return w.contiguous()


class _SharedNormQKV(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, norm, w_cat, b_cat, w_slots, grads, work):
        # x [B, T, d]; w_cat [d, 3H*dh]; w_slots [3H, dh, d]; grads, work[0], work[1] [3H, B, T, d]
        y = norm(x)
        qkv = y.reshape(-1, y.shape[-1]) @ w_cat  # [B*T, 3H*dh]
        if b_cat is not None:
            qkv = qkv + b_cat
        ctx.save_for_backward(x, w_slots)
        ctx.kind, ctx.eps = norm_kind(norm)
        ctx.grads, ctx.work = grads, work
        return qkv.view(*x.shape[:2], -1)  # [B, T, 3H*dh]

    @staticmethod
    def backward(ctx, grad_qkv):
        # Norm backward per slot s, token n: dx = rstd * (g - mean_d(g) - x_hat * mean_d(g * x_hat)),
        # g = gamma * (dq/k/v_s @ W_s^T). rstd is folded into the small q/k/v gradient, gamma and
        # the mean_d term into w_slots; what is left is one matmul and one pass over [3H, B*T, d].
        x, w_slots = ctx.saved_tensors
        n_slots, dh, d = w_slots.shape
        B, T, _ = x.shape
        x2 = x.reshape(B * T, d)
        centred = x2 - x2.mean(-1, keepdim=True) if ctx.kind == "layer" else x2
        rstd = torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + ctx.eps)  # [B*T, 1]
        x_hat = centred * rstd  # [B*T, d]
        g = (grad_qkv.reshape(B * T, n_slots, dh) * rstd[:, :, None]).transpose(0, 1)  # [3H, B*T, dh]
        slot_grad, scratch = ctx.work[0].view(n_slots, B * T, d), ctx.work[1].view(n_slots, B * T, d)
        torch.bmm(g, w_slots, out=slot_grad)  # preallocated: fresh 3H x B*T x d tensors cost page faults
        proj = torch.mul(slot_grad, x_hat, out=scratch).sum(-1, keepdim=True).div_(d)  # [3H, B*T, 1]
        slot_grad.addcmul_(x_hat, proj, value=-1)  # [3H, B*T, d]: each slot's gradient at x
        ctx.grads.add_(slot_grad.view(n_slots, B, T, d))
        return slot_grad.sum(0).view(B, T, d), None, None, None, None, None, None


def shared_norm_qkv(x: torch.Tensor, norm: torch.nn.Module, w_cat: torch.Tensor, b_cat: torch.Tensor | None,
                    w_slots: torch.Tensor, grads: torch.Tensor | None = None,
                    work: torch.Tensor | None = None) -> torch.Tensor:
    """norm(x) @ w_cat + b_cat -> [B, T, 3H*dh]. With `grads` [3H, B, T, d] (and scratch `work`
    [2, 3H, B, T, d]), a backward pass adds each (q/k/v, head) slot's input gradient to `grads`
    (slot order: q of every head, then k, then v)."""
    if grads is None or not x.requires_grad:
        y = norm(x)
        qkv = y.reshape(-1, y.shape[-1]) @ w_cat
        return (qkv if b_cat is None else qkv + b_cat).view(*x.shape[:2], -1)
    return _SharedNormQKV.apply(x, norm, w_cat, b_cat, w_slots, grads, work)
