"""``lstm``: the spec's LSTM, exactly its equations, one bias per gate.

    f = sigmoid(W_f x + U_f h + b_f)      i = sigmoid(W_i x + U_i h + b_i)
    o = sigmoid(W_o x + U_o h + b_o)      c~ = tanh(W_c x + U_c h + b_c)
    c' = f * c + i * c~                   h' = o * tanh(c')

Weight layout (see :mod:`seqframe.core.cells.standard`): four blocks in the
order ``i, f, c~, o`` (torch's ``i, f, g, o`` and Keras's ``i, f, c, o``),
``weight_ih [4H, I]``, ``weight_hh [4H, H]``, ``bias [4H]``: 4(IH + HH + H)
parameters, 1600 at I=8, H=16 (torch.nn.LSTM has two biases, 1664).

State: ``(h, c)``, each ``[B, H]``. Fast path: torch's fused LSTM kernel
(oneDNN on CPU, cuDNN on GPU), fed the cell's own parameters plus a zero
recurrent bias.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from seqframe.core.cells.standard import StandardCell, run_fused
from seqframe.hookspecs import hookimpl


class LSTM(StandardCell):
    """The spec's LSTM. ``forget_bias`` is added to the forget gate's bias after
    initialisation (1.0, as Keras's ``unit_forget_bias``: it lets gradients
    flow through long sequences from the first step)."""

    name = "lstm"
    gates = 3
    has_cell_state = True
    fused_projection = True
    num_blocks = 4

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0, init: str = "keras") -> None:
        super().__init__(input_size, hidden_size, init=init)
        self.forget_bias = float(forget_bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        h = self.hidden_size
        with torch.no_grad():
            self.bias[h : 2 * h] += self.forget_bias

    def step(self, p_t: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        h, c = state
        gates = torch.addmm(p_t, h, self.weight_hh.t())
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def scan(
        self, x: Tensor, state: Tuple[Tensor, Tensor], lengths: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        out, (h, c) = run_fused(torch.lstm, x, state, self.fused_weights(), self.training, lengths)
        return out, (h, c)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, forget_bias={self.forget_bias}"


@hookimpl
def seqframe_cells():
    return [LSTM]
