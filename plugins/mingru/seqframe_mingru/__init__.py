"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv:2410.01201).

The gates read only the input, so the recurrence is linear in the state:

    z_t = sigmoid(W_z x_t + b_z)        h~_t = W_h x_t + b_h
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

which is ``h_t = a_t * h_{t-1} + b_t`` with ``a = 1 - z`` and ``b = z * h~``.
Option ``scan_method``:

* ``auto``: on a GPU the parallel scan below; elsewhere no scan at all, so that
  seqframe runs the cell on kernels generated from ``step``: measured on the
  reference CPU (training step, same run), they took 0.81, 0.91 and 0.96 of the
  time of the hand-written whole-sequence kernel this plugin had before 0.2, at
  the bench's spec, medium and large sizes, and that kernel was removed;
* ``parallel`` (a GPU's best): :func:`seqframe.kernels.linear_recurrence`, a
  log-depth associative scan over the whole sequence;
* ``sequential``: the same function's sequential kernel (one fused
  multiply-add per step, the adjoint recurrence written out).

Both only multiply and add, so they stay finite at any T (no division or log).

Weight layout: ``proj`` is one Linear ``I -> 2H``: rows ``0:H`` give ``z``'s
pre-activation, rows ``H:2H`` give ``h~``. 2(IH + H) parameters.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

import seqframe
from seqframe.kernels import METHODS, linear_recurrence


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

    def has_scan(self) -> bool:
        """A scan for an explicit ``scan_method``, and for ``auto`` on a GPU; on a CPU ``auto`` leaves
        the sequence to seqframe's generated kernels, which beat the hand-written CPU kernel."""
        return self.scan_method != "auto" or self.proj.weight.is_cuda

    def scan(self, x: Tensor, state: Tensor, lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """The whole sequence from the layer input ``x`` ``[B, T, I]``, as one linear recurrence."""
        steps = x.shape[1]
        p = self.proj(x)
        z = torch.sigmoid(p[..., : self.hidden_size])
        if lengths is not None:  # padded steps: z = 0 carries the state unchanged
            z = z * (torch.arange(steps, device=x.device)[None, :] < lengths.to(x.device)[:, None]).unsqueeze(-1)
        method = "sequential" if self.scan_method == "sequential" else "parallel"
        h = linear_recurrence(1.0 - z, z * p[..., self.hidden_size :], state, method=method)
        return h, h[:, -1]


@seqframe.hookimpl
def seqframe_cells():
    return [MinGRU]
