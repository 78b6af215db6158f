"""``rnn``: the vanilla (Elman) RNN, ``h' = act(W x + U h + b)``.

Weight layout (see :mod:`seqframe.core.cells.standard`): one block,
``weight_ih [H, I]``, ``weight_hh [H, H]``, ``bias [H]``: IH + HH + H
parameters, 400 at I=8, H=16 (as Keras's SimpleRNN).

State: ``h`` ``[B, H]``. Option ``nonlinearity``: ``tanh`` (default) or
``relu``. Fast path: torch's fused ``rnn_tanh`` / ``rnn_relu`` kernels.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from seqframe.core.cells.standard import StandardCell, check_choice, run_fused
from seqframe.hookspecs import hookimpl

NONLINEARITIES = {"tanh": (torch.tanh, torch.rnn_tanh), "relu": (torch.relu, torch.rnn_relu)}


class RNN(StandardCell):
    """The vanilla RNN: no gates, the whole state rewritten every step."""

    name = "rnn"
    gates = 0
    has_cell_state = False
    fused_projection = True
    num_blocks = 1

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", init: str = "keras") -> None:
        super().__init__(input_size, hidden_size, init=init)
        check_choice(self.name, "nonlinearity", nonlinearity, tuple(NONLINEARITIES))
        self.nonlinearity = nonlinearity
        self._activation, self._kernel = NONLINEARITIES[nonlinearity]
        self.reset_parameters()

    def step(self, p_t: Tensor, state: Tensor) -> Tuple[Tensor, Tensor]:
        h = self._activation(torch.addmm(p_t, state, self.weight_hh.t()))
        return h, h

    def scan(self, x: Tensor, state: Tensor, lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        out, (h,) = run_fused(self._kernel, x, (state,), self.fused_weights(), self.training, lengths)
        return out, h

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"


@hookimpl
def seqframe_cells():
    return [RNN]
