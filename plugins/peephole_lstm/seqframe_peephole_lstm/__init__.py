"""Peephole LSTM (Gers & Schmidhuber 2000, "Recurrent nets that time and count", IJCNN).

The gates also see the cell state: input and forget gates the previous one,
the output gate the new one:

    i = sigmoid(W_i x + U_i h + p_i * c_{t-1} + b_i)
    f = sigmoid(W_f x + U_f h + p_f * c_{t-1} + b_f)
    c_t = f * c_{t-1} + i * tanh(W_c x + U_c h + b_c)
    o = sigmoid(W_o x + U_o h + p_o * c_t + b_o)
    h_t = o * tanh(c_t)

Weight layout: ``weight_ih [4H, I]``, ``weight_hh [4H, H]``, ``bias [4H]``,
blocks in the order ``i, f, c~, o`` (as the built-in lstm); ``peephole [3, H]``
holds ``p_i, p_f, p_o`` (diagonal peephole weights). 4(IH + HH + H) + 3H parameters.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seqframe


class PeepholeLSTM(seqframe.Cell):
    """An LSTM whose gates look at the cell state through diagonal peephole weights."""

    name = "peephole_lstm"
    gates = 3
    has_cell_state = True

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0) -> None:
        super().__init__(input_size, hidden_size)
        h = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * h, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * h, h))
        self.bias = nn.Parameter(torch.zeros(4 * h))
        self.peephole = nn.Parameter(torch.empty(3, h))
        bound = 1 / math.sqrt(h)
        for weight in (self.weight_ih, self.peephole):
            nn.init.uniform_(weight, -bound, bound)
        nn.init.orthogonal_(self.weight_hh)
        with torch.no_grad():
            self.bias[h : 2 * h] = forget_bias

    def project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def initial_state(self, batch: int, device=None, dtype=None) -> Tuple[Tensor, Tensor]:
        zeros = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def step(self, p_t: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        h, c = state
        i, f, g, o = torch.addmm(p_t, h, self.weight_hh.t()).chunk(4, dim=1)
        peep_i, peep_f, peep_o = self.peephole
        c_new = torch.sigmoid(f + peep_f * c) * c + torch.sigmoid(i + peep_i * c) * torch.tanh(g)
        h = torch.sigmoid(o + peep_o * c_new) * torch.tanh(c_new)
        return h, (h, c_new)


@seqframe.hookimpl
def seqframe_cells():
    return [PeepholeLSTM]
