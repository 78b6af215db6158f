"""The built-in cells against independent references: NumPy, torch.nn, Keras layouts."""

import numpy as np
import numpy_reference as ref
import pytest
import torch
from torch import nn

from seqframe import Recurrent, create_cell

B, T, I, H = 4, 10, 8, 16
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def blocks(cell, names):
    """Per-gate (W, U, b) in float64 NumPy, split by the documented row-block layout."""
    h = cell.hidden_size
    arrays = [p.detach().double().numpy() for p in (cell.weight_ih, cell.weight_hh, cell.bias)]
    return {n: tuple(a[k * h : (k + 1) * h] for a in arrays) for k, n in enumerate(names)}


def run_reference(cell, x, state):
    """The NumPy reference for a built-in cell with the given initial state."""
    xn = x.double().numpy()
    if cell.name == "rnn":
        return ref.rnn(xn, state.double().numpy(), blocks(cell, "h"), cell.nonlinearity)
    if cell.name == "lstm":
        h, c = (s.double().numpy() for s in state)
        return ref.lstm(xn, h, c, blocks(cell, "ifco"))
    return ref.gru_spec(xn, state.double().numpy(), blocks(cell, "rzh"))


SPEC_CELLS = [("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("gru", {})]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("random_state", [False, True])
@pytest.mark.parametrize("backend", ["loop", "auto"])
@pytest.mark.parametrize("name,options", SPEC_CELLS)
def test_cell_matches_numpy_spec(name, options, backend, random_state, dtype):
    torch.manual_seed(0)
    layer = Recurrent(name, I, H, backend=backend, cell_options=options).to(dtype)
    cell = layer.cells[0]
    with torch.no_grad():  # non-zero biases so that every term is exercised
        cell.bias.uniform_(-0.5, 0.5)
    x = torch.randn(B, T, I, dtype=dtype)
    state = cell.initial_state(B, dtype=dtype)
    if random_state:
        state = tuple(torch.randn_like(s) for s in state) if isinstance(state, tuple) else torch.randn_like(state)
    stacked = tuple(s.unsqueeze(0) for s in state) if isinstance(state, tuple) else state.unsqueeze(0)
    with torch.no_grad():
        out, final = layer(x, stacked)
    ref_out, ref_final = run_reference(cell, x, state)
    np.testing.assert_allclose(out.double().numpy(), ref_out, atol=TOL[dtype], rtol=0)
    finals = final if isinstance(final, tuple) else (final,)
    ref_finals = ref_final if isinstance(ref_final, tuple) else (ref_final,)
    for got, want in zip(finals, ref_finals):
        np.testing.assert_allclose(got[0].double().numpy(), want, atol=TOL[dtype], rtol=0)


@pytest.mark.parametrize(
    "name,options,count",
    [("rnn", {}, 400), ("lstm", {}, 1600), ("gru", {}, 1200), ("gru", {"reset_after": True}, 1248)],
)
def test_parameter_counts_match_keras(name, options, count):
    cell = create_cell(name, 8, 16, **options)
    assert sum(p.numel() for p in cell.parameters()) == count


TORCH_PAIRS = [
    ("rnn", {}, lambda **k: nn.RNN(nonlinearity="tanh", **k)),
    ("rnn", {"nonlinearity": "relu"}, lambda **k: nn.RNN(nonlinearity="relu", **k)),
    ("lstm", {}, nn.LSTM),
    ("gru", {"reset_after": True}, nn.GRU),
]


@pytest.mark.parametrize("backend", ["loop", "auto"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("name,options,torch_cls", TORCH_PAIRS)
def test_cell_matches_torch_nn(name, options, torch_cls, layers, bidirectional, backend):
    torch.manual_seed(1)
    reference = torch_cls(input_size=I, hidden_size=H, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    layer = Recurrent(name, I, H, num_layers=layers, bidirectional=bidirectional, backend=backend, cell_options=options)
    layer.load_torch(reference)
    x = torch.randn(B, T, I)
    with torch.no_grad():
        want_out, want_state = reference(x)
        got_out, got_state = layer(x)
    torch.testing.assert_close(got_out, want_out, atol=1e-5, rtol=0)
    want = want_state if isinstance(want_state, tuple) else (want_state,)
    got = got_state if isinstance(got_state, tuple) else (got_state,)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)


def test_default_gru_is_the_spec_form_not_torch():
    """Same numbers in the same slots: the spec's GRU must compute something else than nn.GRU."""
    torch.manual_seed(2)
    reference = nn.GRU(I, H, batch_first=True)
    torch_form = Recurrent("gru", I, H, cell_options={"reset_after": True})
    torch_form.load_torch(reference)
    spec_form = Recurrent("gru", I, H)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias"):
            getattr(spec_form.cells[0], name).copy_(getattr(torch_form.cells[0], name))
    x = torch.randn(B, T, I)
    with torch.no_grad():
        diff = (spec_form(x)[0] - reference(x)[0]).abs().max().item()
    assert diff > 1e-2
    with pytest.raises(ValueError, match="reset_after"):
        spec_form.cells[0].load_torch(reference)


def keras_arrays(units, gates, rng, stacked_bias=False):
    kernel = rng.standard_normal((I, gates * units)) * 0.3
    recurrent = rng.standard_normal((units, gates * units)) * 0.3
    bias = rng.standard_normal((2, gates * units) if stacked_bias else (gates * units,)) * 0.3
    return kernel, recurrent, bias


def test_keras_lstm_weights_give_keras_outputs():
    rng = np.random.default_rng(3)
    kernel, recurrent, bias = keras_arrays(H, 4, rng)
    cell = create_cell("lstm", I, H).double()
    cell.load_keras(kernel, recurrent, bias)
    x = rng.standard_normal((B, T, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    want, (wh, wc) = ref.keras_lstm(x, h0, c0, kernel, recurrent, bias)
    layer = Recurrent(lambda i, h: cell, I, H)
    with torch.no_grad():
        out, (h, c) = layer(torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    np.testing.assert_allclose(out.numpy(), want, atol=1e-10)
    np.testing.assert_allclose(c[0].numpy(), wc, atol=1e-10)
    # and the spec's reference agrees once the Keras arrays are read as the spec's gates
    np.testing.assert_allclose(
        run_reference(cell, torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))[0], want, atol=1e-10
    )


@pytest.mark.parametrize("reset_after", [False, True])
def test_keras_gru_weights_give_keras_outputs(reset_after):
    rng = np.random.default_rng(4)
    kernel, recurrent, bias = keras_arrays(H, 3, rng, stacked_bias=reset_after)
    cell = create_cell("gru", I, H, reset_after=reset_after).double()
    cell.load_keras(kernel, recurrent, bias)
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, H))
    want, want_h = ref.keras_gru(x, h0, kernel, recurrent, bias, reset_after)
    for backend in ("loop", "auto"):
        layer = Recurrent(lambda i, h: cell, I, H, backend=backend)
        with torch.no_grad():
            out, h = layer(torch.from_numpy(x), torch.from_numpy(h0)[None])
        np.testing.assert_allclose(out.numpy(), want, atol=1e-10)
        np.testing.assert_allclose(h[0].numpy(), want_h, atol=1e-10)


def test_keras_gru_weights_refuse_the_other_form():
    kernel, recurrent, bias = keras_arrays(H, 3, np.random.default_rng(5), stacked_bias=True)
    with pytest.raises(ValueError, match="reset_after=True"):
        create_cell("gru", I, H).load_keras(kernel, recurrent, bias)


def test_keras_initialisation():
    torch.manual_seed(6)
    cell = create_cell("lstm", 32, 64)
    h = 64
    assert torch.equal(cell.bias[h : 2 * h], torch.ones(h))  # forget gate +1
    assert torch.equal(cell.bias[:h], torch.zeros(h)) and torch.equal(cell.bias[2 * h :], torch.zeros(2 * h))
    gram = cell.weight_hh.T @ cell.weight_hh  # orthogonal recurrent kernel
    torch.testing.assert_close(gram, torch.eye(h), atol=1e-5, rtol=0)
    limit = (6 / (32 + 4 * h)) ** 0.5  # glorot-uniform input kernel
    assert cell.weight_ih.abs().max() <= limit and cell.weight_ih.abs().max() > 0.9 * limit
    torch_init = create_cell("lstm", 32, 64, init="torch", forget_bias=0.0)
    assert torch_init.weight_hh.abs().max() <= 1 / 8 and torch_init.bias.abs().max() > 0


@pytest.mark.parametrize(
    "name,options,match",
    [
        ("rnn", {"nonlinearity": "sigmoid"}, "nonlinearity='sigmoid' is not valid; choose one of 'tanh', 'relu'"),
        ("lstm", {"init": "he"}, "choose one of 'keras', 'torch'"),
    ],
)
def test_bad_option_values_name_the_choices(name, options, match):
    with pytest.raises(ValueError, match=match):
        create_cell(name, I, H, **options)
