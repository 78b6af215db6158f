"""Layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization", arXiv:1607.06450, sec. 3.1).

    (i, f, c~, o) = LN(W x_t; a_x) + LN(U h_{t-1}; a_h) + b
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(c~)
    h_t = sigmoid(o) * tanh(LN(c_t; a_c, b_c))

``LN(v; a, b) = a * (v - mean(v)) / std(v) + b`` over the whole ``4H`` (or
``H``) vector. The two gate normalisations have gains only: their shifts would
just add to ``b``.

Weight layout: ``weight_ih [4H, I]``, ``weight_hh [4H, H]``, ``bias [4H]``,
blocks in the order ``i, f, c~, o`` (as the built-in lstm); ``norm_ih``,
``norm_hh`` (gains ``[4H]``) and ``norm_c`` (gain and shift ``[H]``).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import seqframe


class LayerNormLSTM(seqframe.Cell):
    """An LSTM with layer normalisation on the gate pre-activations and the cell state."""

    name = "layernorm_lstm"
    gates = 3
    has_cell_state = True

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0, eps: float = 1e-5) -> None:
        super().__init__(input_size, hidden_size)
        h = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * h, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * h, h))
        self.bias = nn.Parameter(torch.zeros(4 * h))
        self.norm_ih = nn.LayerNorm(4 * h, eps=eps, bias=False)
        self.norm_hh = nn.LayerNorm(4 * h, eps=eps, bias=False)
        self.norm_c = nn.LayerNorm(h, eps=eps)
        nn.init.uniform_(self.weight_ih, -1 / math.sqrt(h), 1 / math.sqrt(h))
        nn.init.orthogonal_(self.weight_hh)
        with torch.no_grad():
            self.bias[h : 2 * h] = forget_bias

    def project(self, x: Tensor) -> Tensor:
        return self.norm_ih(F.linear(x, self.weight_ih)) + self.bias

    def initial_state(self, batch: int, device=None, dtype=None) -> Tuple[Tensor, Tensor]:
        zeros = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def step(self, p_t: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        h, c = state
        gates = p_t + self.norm_hh(F.linear(h, self.weight_hh))
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.norm_c(c))
        return h, (h, c)


@seqframe.hookimpl
def seqframe_cells():
    return [LayerNormLSTM]
