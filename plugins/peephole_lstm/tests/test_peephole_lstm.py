"""Peephole LSTM: the conformance kit and Gers & Schmidhuber's equations in NumPy."""

import numpy as np
import torch

from seqframe import Recurrent, create_cell

SEQFRAME_CELLS = ["peephole_lstm"]


def test_conformance(seqframe_check):
    seqframe_check()


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def test_matches_the_papers_equations():
    torch.manual_seed(0)
    layer = Recurrent("peephole_lstm", 4, 5).double()
    cell = layer.cells[0]
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    with torch.no_grad():
        cell.bias.uniform_(-0.5, 0.5)
        out, (h_final, c_final) = layer(x)
    w, u, b, peep = (t.detach().numpy() for t in (cell.weight_ih, cell.weight_hh, cell.bias, cell.peephole))
    p_i, p_f, p_o = peep
    h = c = np.zeros((2, 5))
    for t in range(6):
        pre = x[:, t].numpy() @ w.T + h @ u.T + b
        zi, zf, zg, zo = np.split(pre, 4, axis=1)
        i = sigmoid(zi + p_i * c)
        f = sigmoid(zf + p_f * c)
        c = f * c + i * np.tanh(zg)
        o = sigmoid(zo + p_o * c)
        h = o * np.tanh(c)
        np.testing.assert_allclose(out[:, t].numpy(), h, atol=1e-10)
    np.testing.assert_allclose(c_final[0].numpy(), c, atol=1e-10)


def test_parameter_count():
    assert sum(p.numel() for p in create_cell("peephole_lstm", 8, 16).parameters()) == 1600 + 3 * 16
