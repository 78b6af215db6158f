"""A whole-sequence kernel for the spec's (reset-before) GRU, written in torch ops.

No library ships a fused kernel for this form, so this is one: the input
projection runs once, time-major, for all steps; the forward loop writes into
preallocated buffers outside autograd; and the backward pass is written out
(backpropagation through time) instead of being recorded step by step. Per
step that leaves a handful of kernels and no autograd bookkeeping, and the
recurrent weight's gradient becomes two large matrix products over all steps
at once instead of T small ones.

Equations (``p`` holds the projected input, blocks ``r, z, h~``; ``U`` is
``weight_hh``; ``m`` is 1 on real steps and 0 on padding)::

    r, z = sigmoid(p_rz + h U_rz^T)
    n    = tanh(p_n + (r * h) U_n^T)
    h'   = h + (m z) (n - h)          # m = 0 carries the state over padding
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqframe.kernels import time_blocks

# fused derivative kernels: g * s * (1 - s) and g * (1 - t * t) in one pass each
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward.grad_input


def spec_gru_sequence(
    x: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    bias: Tensor,
    weight_hh: Tensor,
    lengths: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Run the spec GRU over ``x`` ``[B, T, I]`` from ``h0`` ``[B, H]``: outputs ``[B, T, H]``, final state.

    The projection is computed time-major (``[T, B, 3H]``, from the small
    ``[T, B, I]`` input) so that every step's slices are contiguous rows
    without copying the large projected tensor.
    """
    steps = x.shape[1]
    if lengths is None:
        mask = None
    else:
        mask = (torch.arange(steps, device=x.device)[:, None] < lengths.to(x.device)[None, :]).to(x.dtype)
        mask = mask.unsqueeze(-1)  # [T, B, 1]
    p_time = F.linear(x.transpose(0, 1), weight_ih, bias)
    # under mixed precision (autocast) the projection runs in the low precision; the recurrence keeps
    # the weights' precision, so that the state does not lose digits step after step
    dtype = torch.promote_types(p_time.dtype, weight_hh.dtype)
    with torch.autocast(x.device.type, enabled=False):
        out = _SpecGRUScan.apply(p_time.to(dtype), h0.to(dtype), weight_hh.to(dtype), mask)
    return out, out[:, -1]


class _SpecGRUScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p: Tensor, h0: Tensor, weight_hh: Tensor, mask: Optional[Tensor]) -> Tensor:
        steps, batch = p.shape[:2]
        hidden = h0.shape[1]
        p_rz, p_n = p[..., : 2 * hidden], p[..., 2 * hidden :]
        u_rz, u_n = weight_hh[: 2 * hidden].t(), weight_hh[2 * hidden :].t()
        hs = p.new_empty(steps + 1, batch, hidden)
        gates = p.new_empty(steps, batch, 2 * hidden)  # sigmoid outputs r, z
        candidate = p.new_empty(steps, batch, hidden)  # n
        reset_h = p.new_empty(steps, batch, hidden)  # r * h
        update = gates[:, :, hidden:] if mask is None else p.new_empty(steps, batch, hidden)  # m * z
        hs[0] = h0
        for t in range(steps):
            torch.addmm(p_rz[t], hs[t], u_rz, out=gates[t]).sigmoid_()
            torch.mul(gates[t, :, :hidden], hs[t], out=reset_h[t])
            torch.addmm(p_n[t], reset_h[t], u_n, out=candidate[t]).tanh_()
            if mask is not None:
                torch.mul(gates[t, :, hidden:], mask[t], out=update[t])
            torch.lerp(hs[t], candidate[t], update[t], out=hs[t + 1])  # h + u (n - h), one kernel
        ctx.save_for_backward(weight_hh, hs, gates, update, candidate, reset_h, mask)
        return hs[1:].transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        weight_hh, hs, gates, update, candidate, reset_h, mask = ctx.saved_tensors
        steps, batch, hidden = candidate.shape
        u_rz, u_n = weight_hh[: 2 * hidden], weight_hh[2 * hidden :]
        g_out = grad_out.transpose(0, 1)  # read step by step: no copy, also when it is an expanded view
        h_prev = hs[:-1]
        # the gradient of p, gate blocks side by side: d_r and d_z next to each other make the
        # recurrent step one matrix product, and the result needs no concatenation
        d_p = hs.new_empty(steps, batch, 3 * hidden)
        d_rz, d_n = d_p[..., : 2 * hidden], d_p[..., 2 * hidden :]
        d_r, d_z = d_rz[..., :hidden], d_rz[..., hidden:]
        dh, d_reset_h = hs.new_zeros(batch, hidden), hs.new_empty(batch, hidden)
        # every factor that does not depend on dh, for a block of steps at once, each in one fused
        # derivative kernel, into block buffers reused from block to block: few large kernels instead
        # of ~13 small ones per step, on data that stays in cache (seqframe.kernels.time_blocks)
        r, z_sig, z, n = gates[..., :hidden], gates[..., hidden:], update, candidate
        blocks = time_blocks(steps, batch * hidden)
        size = blocks[0][1] - blocks[0][0]
        n_factors, r_factors, z_factors = (hs.new_empty(size, batch, hidden) for _ in range(3))
        for start, stop in reversed(blocks):
            block, count = slice(start, stop), stop - start
            n_factor = _tanh_backward(z[block], n[block], grad_input=n_factors[:count])  # d_n = dh z tanh'
            r_factor = _sigmoid_backward(h_prev[block], r[block], grad_input=r_factors[:count])  # (d_n U_n) h sigmoid'
            z_factor = torch.sub(n[block], h_prev[block], out=z_factors[:count])  # d_z = dh (n - h) sigmoid' m
            _sigmoid_backward(z_factor, z_sig[block], grad_input=z_factor)
            if mask is not None:
                z_factor.mul_(mask[block])
            for t in range(stop - 1, start - 1, -1):  # per-step slices stay in cache, also for large B*H
                i = t - start
                dh.add_(g_out[t])
                torch.mul(dh, n_factor[i], out=d_n[t])
                torch.mm(d_n[t], u_n, out=d_reset_h)
                torch.mul(d_reset_h, r_factor[i], out=d_r[t])
                torch.mul(dh, z_factor[i], out=d_z[t])
                # dh flows straight through the (1 - m z) share of h: dh - dh * z, in place
                dh.addcmul_(dh, z[t], value=-1).addcmul_(d_reset_h, r[t]).addmm_(d_rz[t], u_rz)
        rows = steps * batch
        flat_h, flat_rh = h_prev.reshape(rows, hidden), reset_h.reshape(rows, hidden)
        d_weight = torch.empty_like(weight_hh)
        torch.mm(d_rz.reshape(rows, 2 * hidden).t(), flat_h, out=d_weight[: 2 * hidden])
        torch.mm(d_n.reshape(rows, hidden).t(), flat_rh, out=d_weight[2 * hidden :])
        return d_p, dh, d_weight, None
