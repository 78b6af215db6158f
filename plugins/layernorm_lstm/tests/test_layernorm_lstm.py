"""LayerNorm LSTM: the conformance kit and Ba et al.'s equations in NumPy."""

import numpy as np
import torch

from seqframe import Recurrent

SEQFRAME_CELLS = ["layernorm_lstm"]


def test_conformance(seqframe_check):
    seqframe_check()


def layer_norm(v, gain, shift=0.0, eps=1e-5):
    mean = v.mean(-1, keepdims=True)
    var = v.var(-1, keepdims=True)
    return gain * (v - mean) / np.sqrt(var + eps) + shift


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def test_matches_the_papers_equations():
    torch.manual_seed(0)
    layer = Recurrent("layernorm_lstm", 4, 5).double()
    cell = layer.cells[0]
    with torch.no_grad():  # non-trivial gains and shifts
        for p in (cell.norm_ih.weight, cell.norm_hh.weight, cell.norm_c.weight, cell.norm_c.bias, cell.bias):
            p.uniform_(0.5, 1.5)
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    with torch.no_grad():
        out, _ = layer(x)
    w, u, b = (t.detach().numpy() for t in (cell.weight_ih, cell.weight_hh, cell.bias))
    a_x, a_h = cell.norm_ih.weight.detach().numpy(), cell.norm_hh.weight.detach().numpy()
    a_c, b_c = cell.norm_c.weight.detach().numpy(), cell.norm_c.bias.detach().numpy()
    h = c = np.zeros((2, 5))
    for t in range(6):
        gates = layer_norm(x[:, t].numpy() @ w.T, a_x) + layer_norm(h @ u.T, a_h) + b
        i, f, g, o = np.split(gates, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(layer_norm(c, a_c, b_c))
        np.testing.assert_allclose(out[:, t].numpy(), h, atol=1e-10)
