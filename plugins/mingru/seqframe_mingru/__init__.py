"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

The gates read only the input, so the recurrence is linear in the state:

    z_t = sigmoid(W_z x_t + b_z)        h~_t = W_h x_t + b_h
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

which is ``h_t = a_t * h_{t-1} + b_t`` with ``a = 1 - z`` and ``b = z * h~``:
``scan`` solves it for all steps at once with :func:`seqframe.scans.linear_recurrence`,
stable at any T (no division or log). Option ``scan_method``: ``parallel``
(log2(T) rounds over the whole sequence: best on GPUs), ``sequential`` (one
fused multiply-add per step with a hand-written backward: best on CPUs) or
``auto`` (by device; on a CPU, very large batches take the step loop, which
measured faster there).

Weight layout: ``proj`` is one Linear ``I -> 2H``: rows ``0:H`` give ``z``'s
pre-activation, rows ``H:2H`` give ``h~``. 2(IH + H) parameters.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

import seqframe
from seqframe.layers import run_steps, step_mask
from seqframe.scans import METHODS, cpu_kernel_worthwhile, linear_recurrence


class MinGRU(seqframe.Cell):
    """minGRU: a GRU whose gates do not see the state, so sequences run as a parallel scan."""

    name = "mingru"
    gates = 1
    has_cell_state = False

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

    def scan(self, p: Tensor, state: Tensor, lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        batch, steps = p.shape[:2]
        if self.scan_method == "auto" and not cpu_kernel_worthwhile(steps, batch, self.hidden_size, p.device):
            return run_steps(self, p, state, step_mask(lengths, steps, p.device))
        z = torch.sigmoid(p[..., : self.hidden_size])
        a, b = 1.0 - z, z * p[..., self.hidden_size :]
        if lengths is not None:  # padded steps: a = 1, b = 0 carries the state unchanged
            valid = (torch.arange(p.shape[1], device=p.device) < lengths.to(p.device)[:, None]).unsqueeze(-1)
            a, b = torch.where(valid, a, torch.ones_like(a)), torch.where(valid, b, torch.zeros_like(b))
        h = linear_recurrence(a, b, state, method=self.scan_method)
        return h, h[:, -1]


@seqframe.hookimpl
def seqframe_cells():
    return [MinGRU]
