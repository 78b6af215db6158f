"""Independent float64 NumPy implementations of the spec's equations (and Keras's forms).

Weights are given per gate, as the equations name them: ``{"f": (W, U, b), ...}``
with ``W [H, I]``, ``U [H, H]``, ``b [H]``; nothing here knows seqframe's layout.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _affine(gate, x, h):
    w, u, b = gate
    return x @ w.T + h @ u.T + b


def rnn(x, h, gates, nonlinearity="tanh"):
    act = np.tanh if nonlinearity == "tanh" else (lambda a: np.maximum(a, 0.0))
    outputs = []
    for t in range(x.shape[1]):
        h = act(_affine(gates["h"], x[:, t], h))
        outputs.append(h)
    return np.stack(outputs, 1), h


def lstm(x, h, c, gates):
    outputs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        f = sigmoid(_affine(gates["f"], xt, h))
        i = sigmoid(_affine(gates["i"], xt, h))
        o = sigmoid(_affine(gates["o"], xt, h))
        c_tilde = np.tanh(_affine(gates["c"], xt, h))
        c = f * c + i * c_tilde
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, 1), (h, c)


def gru_spec(x, h, gates):
    """The spec's GRU: reset before the recurrent product, h = (1-z) h + z h~."""
    outputs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        z = sigmoid(_affine(gates["z"], xt, h))
        r = sigmoid(_affine(gates["r"], xt, h))
        w, u, b = gates["h"]
        h_tilde = np.tanh(xt @ w.T + (r * h) @ u.T + b)
        h = (1 - z) * h + z * h_tilde
        outputs.append(h)
    return np.stack(outputs, 1), h


def keras_gru(x, h, kernel, recurrent_kernel, bias, reset_after):
    """Keras's GRU from its own arrays (gate order z, r, h; h = z h + (1-z) hh)."""
    units = h.shape[1]
    k = [kernel[:, j * units : (j + 1) * units] for j in range(3)]
    rk = [recurrent_kernel[:, j * units : (j + 1) * units] for j in range(3)]
    if reset_after:
        bi = [bias[0, j * units : (j + 1) * units] for j in range(3)]
        br = [bias[1, j * units : (j + 1) * units] for j in range(3)]
    else:
        bi = [bias[j * units : (j + 1) * units] for j in range(3)]
        br = [np.zeros(units)] * 3
    outputs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        z = sigmoid(xt @ k[0] + bi[0] + h @ rk[0] + br[0])
        r = sigmoid(xt @ k[1] + bi[1] + h @ rk[1] + br[1])
        if reset_after:
            hh = np.tanh(xt @ k[2] + bi[2] + r * (h @ rk[2] + br[2]))
        else:
            hh = np.tanh(xt @ k[2] + bi[2] + (r * h) @ rk[2])
        h = z * h + (1 - z) * hh
        outputs.append(h)
    return np.stack(outputs, 1), h


def keras_lstm(x, h, c, kernel, recurrent_kernel, bias):
    """Keras's LSTM from its own arrays (gate order i, f, c, o)."""
    units = h.shape[1]
    outputs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = (z[:, j * units : (j + 1) * units] for j in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, 1), (h, c)
