"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

The gates read only the input, so the recurrence is linear in the state:

    z_t = sigmoid(W_z x_t + b_z)        h~_t = W_h x_t + b_h
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

which is ``h_t = a_t * h_{t-1} + b_t`` with ``a = 1 - z`` and ``b = z * h~``.
Option ``scan_method``:

* ``sequential`` (a CPU's best): one whole-sequence kernel from the projected
  input to the states, outside autograd, with the backward written out: the
  gate, the per-step interpolation and the adjoint recurrence each touch the
  sequence once (:class:`_MinGRUSequence`), where the step loop records ~12
  autograd ops per step;
* ``parallel`` (a GPU's best): :func:`seqframe.kernels.linear_recurrence`, a
  log-depth associative scan over the whole sequence;
* ``auto``: parallel on GPUs, sequential elsewhere; on a CPU, sequences above
  :data:`seqframe.kernels.CPU_KERNEL_MAX_ELEMENTS` take the step loop, which
  measured faster there (B=128, T=200, H=512: 0.89 of the kernel's time).

Both only multiply and add, so they stay finite at any T (no division or log).

Weight layout: ``proj`` is one Linear ``I -> 2H``: rows ``0:H`` give ``z``'s
pre-activation, rows ``H:2H`` give ``h~``. 2(IH + H) parameters.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

import seqframe
from seqframe.kernels import METHODS, cpu_kernel_worthwhile, linear_recurrence, run_steps, step_mask, time_blocks

_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input  # g * s * (1 - s), written into an out tensor


class MinGRU(seqframe.Cell):
    """minGRU: a GRU whose gates do not see the state, so sequences run as a parallel scan."""

    name = "mingru"
    gates = 1
    has_cell_state = False
    fused_projection = True  # scan projects the input itself, time-major (see scan)

    def __init__(self, input_size: int, hidden_size: int, scan_method: str = "auto") -> None:
        super().__init__(input_size, hidden_size)
        if scan_method not in METHODS:
            raise ValueError(f"cell 'mingru': scan_method={scan_method!r} is not valid; choose one of {METHODS}")
        self.scan_method = scan_method
        self.proj = nn.Linear(input_size, 2 * hidden_size)

    def project(self, x: Tensor) -> Tensor:
        return self.proj(x)

    def step(self, p_t: Tensor, state: Tensor) -> Tuple[Tensor, Tensor]:
        z = torch.sigmoid(p_t[:, : self.hidden_size])
        candidate = p_t[:, self.hidden_size :]
        h = state + z * (candidate - state)
        return h, h

    def scan(self, x: Tensor, state: Tensor, lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """The whole sequence from the layer input ``x`` ``[B, T, I]``; the kernels index time first."""
        batch, steps = x.shape[:2]
        if self.scan_method == "auto" and not cpu_kernel_worthwhile(steps, batch, self.hidden_size, x.device):
            return run_steps(self, self.project(x), state, step_mask(lengths, steps, x.device))
        p = self.proj(x).transpose(0, 1)  # [T, B, 2H] view: the matrix product runs on contiguous rows
        mask = None
        if lengths is not None:  # padded steps: z = 0 carries the state unchanged
            mask = (torch.arange(steps, device=p.device)[:, None] < lengths.to(p.device)[None, :]).unsqueeze(-1)
        if self.scan_method == "parallel" or (self.scan_method == "auto" and x.is_cuda):
            z = torch.sigmoid(p[..., : self.hidden_size])
            if mask is not None:
                z = z * mask
            h = linear_recurrence(
                (1.0 - z).transpose(0, 1), (z * p[..., self.hidden_size :]).transpose(0, 1), state, method="parallel"
            )
            return h, h[:, -1]
        h = _MinGRUSequence.apply(p, state, None if mask is None else mask.to(p.dtype))
        return h.transpose(0, 1), h[-1]


class _MinGRUSequence(torch.autograd.Function):
    """``p`` ``[T, B, 2H]`` (time-major), ``h0`` ``[B, H]``, ``mask`` ``[T, B, 1]`` or None -> ``h`` ``[T, B, H]``.

    Forward: ``u = m * sigmoid(p_z)``, then ``h_t = lerp(h_{t-1}, h~_t, u_t)`` step by step.
    Backward, with ``g_t = dL/dh_t + (1 - u_{t+1}) g_{t+1}`` (the adjoint recurrence):
    ``dL/dh~_t = g_t u_t``, ``dL/dp_z = g_t (h~_t - h_{t-1}) m_t sigmoid'``, ``dL/dh0 = (1 - u_0) g_0``.
    The elementwise passes run block by block through time (:func:`seqframe.kernels.time_blocks`),
    each block's passes right next to its steps, while the block is still in cache.
    """

    @staticmethod
    def forward(ctx, p: Tensor, h0: Tensor, mask: Optional[Tensor]) -> Tensor:
        steps, hidden = p.shape[0], h0.shape[1]
        candidate = p[..., hidden:]
        z, keep = p.new_empty(steps, *h0.shape), p.new_empty(steps, *h0.shape)  # keep = 1 - u: h_{t-1}'s share
        update = z if mask is None else p.new_empty(steps, *h0.shape)
        hs = p.new_empty(steps + 1, *h0.shape)
        hs[0] = h0
        for start, stop in time_blocks(steps, h0.numel()):
            torch.sigmoid(p[start:stop, :, :hidden], out=z[start:stop])
            u = (
                torch.mul(z[start:stop], mask[start:stop], out=update[start:stop])
                if mask is not None
                else z[start:stop]
            )
            torch.sub(1.0, u, out=keep[start:stop])
            for t in range(start, stop):
                torch.lerp(hs[t], candidate[t], u[t - start], out=hs[t + 1])
        ctx.save_for_backward(p, z, update, keep, hs, mask)
        return hs[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor) -> Tuple[Tensor, Tensor, None]:
        p, z, update, keep, hs, mask = ctx.saved_tensors
        steps, hidden = p.shape[0], hs.shape[2]
        g = torch.empty_like(hs[1:])
        d_p = p.new_empty(p.shape[1], p.shape[0], p.shape[2]).transpose(0, 1)  # batch-first, as the projection's
        d_z, d_candidate = d_p[..., :hidden], d_p[..., hidden:]
        for start, stop in reversed(time_blocks(steps, hs[0].numel())):
            for t in range(stop - 1, start - 1, -1):
                if t == steps - 1:
                    g[t] = grad_h[t]
                else:
                    torch.addcmul(grad_h[t], keep[t + 1], g[t + 1], out=g[t])
            block = slice(start, stop)
            torch.mul(g[block], update[block], out=d_candidate[block])
            torch.sub(p[block, :, hidden:], hs[block], out=d_z[block])
            d_z[block].mul_(g[block])
            if mask is not None:
                d_z[block].mul_(mask[block])
            _sigmoid_backward(d_z[block], z[block], grad_input=d_z[block])
        return d_p, keep[0] * g[0], None


@seqframe.hookimpl
def seqframe_cells():
    return [MinGRU]
