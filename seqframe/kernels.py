"""The public helpers a cell's author may build on: step loops, step masks, scans.

This module is part of seqframe's public API (plugins import it: it keeps its
names and signatures across minor versions; see docs/writing-a-cell.md):

* :func:`run_steps`: the reference loop of a cell's ``step`` over a projected
  sequence, carrying the state unchanged over padded steps;
* :func:`step_mask`: the ``[B, T, 1]`` mask of valid steps from ``lengths``;
* :func:`linear_recurrence` (and its two methods) for cells whose recurrence
  is linear in the state; :func:`time_blocks` and
  :func:`cpu_kernel_worthwhile` for hand-written whole-sequence kernels.

Scans for cells whose recurrence is linear in the state:

A linear recurrence ``h_t = a_t * h_{t-1} + b_t`` (minGRU, minLSTM, ...) can
be solved for all steps at once in two ways, both exact and stable (they
only multiply and add: no division or logarithm, so long products of gates
that underflow to 0 give no inf or NaN, unlike a cumulative product divided
out afterwards):

* :func:`parallel_linear_recurrence`: an associative scan over pairs
  ``(a, b)`` (``(a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2)``), combining
  neighbours at distance 1, 2, 4, ... (Hillis & Steele): ``ceil(log2 T)``
  rounds over the whole tensor. Few, large kernels: what a GPU wants.
* :func:`sequential_linear_recurrence`: one fused multiply-add per step,
  outside autograd, with the adjoint recurrence written out for the backward
  pass. On a CPU this wins: each step touches a small, cache-resident slice,
  while every parallel round streams the whole ``[B, T, H]`` tensor through
  memory (log2 T times).

:func:`linear_recurrence` picks by device.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqframe.core.state import State, map_state

if TYPE_CHECKING:
    from seqframe.core.cell import Cell

__all__ = [
    "run_steps", "step_mask", "linear_recurrence", "parallel_linear_recurrence", "sequential_linear_recurrence",
    "time_blocks", "cpu_kernel_worthwhile", "METHODS", "BLOCK_ELEMENTS", "CPU_KERNEL_MAX_ELEMENTS",
]

def step_mask(lengths: Optional[Tensor], steps: int, device: torch.device) -> Optional[Tensor]:
    """``[B, T, 1]`` bool, True on each sequence's valid steps (None without lengths)."""
    if lengths is None:
        return None
    return (torch.arange(steps, device=device) < lengths.to(device).unsqueeze(1)).unsqueeze(-1)


def run_steps(cell: Cell, p: Tensor, state: State, keep: Optional[Tensor] = None) -> Tuple[Tensor, State]:
    """The reference path: ``step`` over ``p`` ``[B, T, P]``. ``keep`` ``[B, T, 1]``
    (bool) marks valid steps; on padded steps the state is carried unchanged."""
    outputs: List[Tensor] = []
    if keep is None:
        for p_t in p.unbind(1):
            h, state = cell.step(p_t, state)
            outputs.append(h)
    else:
        for p_t, keep_t in zip(p.unbind(1), keep.unbind(1)):
            h, new_state = cell.step(p_t, state)
            state = map_state(partial(torch.where, keep_t), new_state, state)
            outputs.append(h)
    return torch.stack(outputs, 1), state



METHODS = ("auto", "parallel", "sequential")
# Whole-sequence kernels on a CPU work through time in blocks of about this many elements per
# [block, B, H] buffer: each block's elementwise passes then run while its few buffers sit in a
# core's L2 cache (1 MiB on the reference machine), instead of streaming the whole sequence through
# memory once per pass (measured: a block pass costs a fraction of a whole-sequence one at B=128, H=512).
BLOCK_ELEMENTS = 32_768


# Above this many elements per [T, B, H] buffer, minGRU's whole-sequence CPU kernel lost to the plain
# step loop on the reference machine (B=128, T=200, H=512: first touches of its large buffers cost
# more than the loop's autograd overhead), so its ``auto`` takes the loop there.
CPU_KERNEL_MAX_ELEMENTS = 4_000_000


def cpu_kernel_worthwhile(steps: int, batch: int, hidden: int, device: torch.device) -> bool:
    """Whether a whole-sequence kernel should run, rather than the step loop, at this size."""
    return device.type != "cpu" or steps * batch * hidden <= CPU_KERNEL_MAX_ELEMENTS


def time_blocks(steps: int, elements_per_step: int) -> List[Tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(steps)`` in blocks of about :data:`BLOCK_ELEMENTS`."""
    size = max(1, BLOCK_ELEMENTS // max(1, elements_per_step))
    return [(start, min(start + size, steps)) for start in range(0, steps, size)]


def _check(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"a and b must both be [B, T, H], got {tuple(a.shape)} and {tuple(b.shape)}")


def linear_recurrence(a: Tensor, b: Tensor, h0: Optional[Tensor] = None, method: str = "auto") -> Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` for ``a, b`` ``[B, T, H]`` (time on dim 1).

    ``h0`` ``[B, H]`` is the state before the first step (zero if None).
    ``method``: ``parallel``, ``sequential``, or ``auto`` (parallel on GPUs,
    sequential elsewhere). Returns ``h`` ``[B, T, H]``; differentiable.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not valid; choose one of {', '.join(METHODS)}")
    if method == "parallel" or (method == "auto" and a.is_cuda):
        return parallel_linear_recurrence(a, b, h0)
    return sequential_linear_recurrence(a, b, h0)


def sequential_linear_recurrence(a: Tensor, b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """:func:`linear_recurrence` as a loop of fused multiply-adds with a hand-written backward."""
    _check(a, b)
    if h0 is None:
        h0 = torch.zeros_like(b[:, 0])
    return _SequentialScan.apply(a, b, h0)


class _SequentialScan(torch.autograd.Function):
    """Forward ``h_t = a_t h_{t-1} + b_t``; backward the adjoint
    ``g_t = dL/dh_t + a_{t+1} g_{t+1}``, then ``dL/da_t = g_t h_{t-1}``,
    ``dL/db_t = g_t``, ``dL/dh0 = a_0 g_0``. Time-major buffers keep each
    step's slice contiguous."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        a_t, b_t = a.transpose(0, 1).contiguous(), b.transpose(0, 1).contiguous()
        h = torch.empty_like(b_t)
        state = h0
        for t in range(a_t.shape[0]):
            state = torch.addcmul(b_t[t], a_t[t], state, out=h[t])
        ctx.save_for_backward(a_t, h, h0)
        return h.transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        a_t, h, h0 = ctx.saved_tensors
        g_out = grad.transpose(0, 1).contiguous()
        g = torch.empty_like(g_out)
        last = a_t.shape[0] - 1
        g[last] = g_out[last]
        for t in range(last - 1, -1, -1):
            torch.addcmul(g_out[t], a_t[t + 1], g[t + 1], out=g[t])
        previous = torch.cat([h0.unsqueeze(0), h[:-1]], dim=0)
        return (g * previous).transpose(0, 1), g.transpose(0, 1), a_t[0] * g[0]


def parallel_linear_recurrence(a: Tensor, b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """:func:`linear_recurrence` as a log-depth associative scan (Hillis & Steele); O(T log T) work."""
    _check(a, b)
    if h0 is not None:
        b = torch.cat([a[:, :1] * h0.unsqueeze(1) + b[:, :1], b[:, 1:]], dim=1)
    steps, offset = a.shape[1], 1
    while offset < steps:
        # each position absorbs the segment that ends `offset` steps before it
        b = torch.cat([b[:, :offset], a[:, offset:] * b[:, :-offset] + b[:, offset:]], dim=1)
        a = torch.cat([a[:, :offset], a[:, offset:] * a[:, :-offset]], dim=1)
        offset *= 2
    return b
