"""Parallel scans for cells whose recurrence is linear in the state.

A linear recurrence ``h_t = a_t * h_{t-1} + b_t`` (minGRU, minLSTM, ...) is
an associative scan over pairs ``(a, b)``: ``(a1, b1) then (a2, b2)`` is
``(a1 * a2, a2 * b1 + b2)``. Combining neighbours at distance 1, 2, 4, ...
(Hillis & Steele) takes ``ceil(log2 T)`` vectorised rounds instead of ``T``
Python steps. It only multiplies and adds: no division and no logarithm, so
products of many gates that underflow to 0 stay exact in meaning (no inf or
NaN, unlike a cumulative product divided out afterwards).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def linear_recurrence(a: Tensor, b: Tensor, h0: Optional[Tensor] = None) -> Tensor:
    """All states of ``h_t = a_t * h_{t-1} + b_t`` for ``a, b`` ``[B, T, H]`` (time on dim 1).

    ``h0`` ``[B, H]`` is the state before the first step (zero if None).
    Returns ``h`` ``[B, T, H]``. Differentiable; O(T log T) work, O(log T) depth.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"a and b must both be [B, T, H], got {tuple(a.shape)} and {tuple(b.shape)}")
    if h0 is not None:
        b = torch.cat([a[:, :1] * h0.unsqueeze(1) + b[:, :1], b[:, 1:]], dim=1)
    steps, offset = a.shape[1], 1
    while offset < steps:
        # each position absorbs the segment that ends `offset` steps before it
        b = torch.cat([b[:, :offset], a[:, offset:] * b[:, :-offset] + b[:, offset:]], dim=1)
        a = torch.cat([a[:, :offset], a[:, offset:] * a[:, :-offset]], dim=1)
        offset *= 2
    return b
