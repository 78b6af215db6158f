"""Every execution path of Recurrent gives the same numbers, with and without lengths."""

import pytest
import torch

from seqframe import Recurrent

FUSED_CELLS = [("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("gru", {"reset_after": True})]
ALL_CELLS = FUSED_CELLS + [("gru", {})]
FAST_PATHS = [(name, options, "fused") for name, options in ALL_CELLS]
SHAPES = [(1, False), (2, True)]


def twin_layers(name, options, layers, bidirectional, dtype=torch.float32, size=(8, 16)):
    """The same weights behind the fast (auto) path and the reference loop."""
    torch.manual_seed(0)
    fast = Recurrent(name, *size, num_layers=layers, bidirectional=bidirectional, cell_options=options).to(dtype)
    loop = Recurrent(name, *size, num_layers=layers, bidirectional=bidirectional, backend="loop", cell_options=options)
    loop = loop.to(dtype)
    loop.load_state_dict(fast.state_dict())
    return fast, loop


def flat(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("layers,bidirectional", SHAPES)
@pytest.mark.parametrize("name,options,path", FAST_PATHS)
def test_fast_path_matches_loop_outputs_states_and_gradients(name, options, path, layers, bidirectional, with_lengths):
    fast, loop = twin_layers(name, options, layers, bidirectional)
    assert fast.paths(with_lengths) == [path] * layers and loop.paths(with_lengths) == ["loop"] * layers
    x = torch.randn(5, 12, 8)
    lengths = torch.tensor([12, 3, 7, 1, 12]) if with_lengths else None
    results = []
    for layer in (fast, loop):
        inp = x.clone().requires_grad_()
        out, state = layer(inp, lengths=lengths)
        loss = out.pow(2).sum() + sum(s.pow(3).sum() for s in flat(state))
        grads = torch.autograd.grad(loss, [inp, *layer.parameters()])
        results.append((out, flat(state), grads))
    (out_a, states_a, grads_a), (out_b, states_b, grads_b) = results
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    for a, b in zip(states_a, states_b):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("backend", ["loop", "auto"])
@pytest.mark.parametrize("name,options", ALL_CELLS)
def test_gradcheck_float64(name, options, backend):
    torch.manual_seed(0)
    layer = Recurrent(name, 3, 4, num_layers=2, bidirectional=True, backend=backend, cell_options=options).double()
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 3])
    params = list(layer.parameters())
    # gradients with respect to the input, and to each parameter through a functional call
    assert torch.autograd.gradcheck(lambda inp: layer(inp, lengths=lengths)[0], (x,))
    names = [n for n, _ in layer.named_parameters()]
    weights = [p.detach().clone().requires_grad_() for p in params]

    def functional(*ws):
        return torch.func.functional_call(layer, dict(zip(names, ws)), (x.detach(),), {"lengths": lengths})[0]

    assert torch.autograd.gradcheck(functional, tuple(weights))


@pytest.mark.parametrize("backend", ["loop", "auto"])
@pytest.mark.parametrize("layers,bidirectional", SHAPES)
@pytest.mark.parametrize("name,options", ALL_CELLS)
def test_padded_batch_equals_each_sequence_alone(name, options, layers, bidirectional, backend):
    torch.manual_seed(0)
    layer = Recurrent(
        name, 8, 16, num_layers=layers, bidirectional=bidirectional, backend=backend, cell_options=options
    )
    lengths = torch.tensor([9, 4, 1, 7])
    x = torch.randn(4, 9, 8)
    x[torch.arange(9) >= lengths[:, None]] = 1e3  # garbage in the padding must not leak
    with torch.no_grad():
        out, state = layer(x, lengths=lengths)
        for b, n in enumerate(lengths.tolist()):
            alone_out, alone_state = layer(x[b : b + 1, :n])
            torch.testing.assert_close(out[b, :n], alone_out[0], atol=1e-5, rtol=1e-5)
            assert torch.all(out[b, n:] == 0), "padded outputs must be zero"
            for got, want in zip(flat(state), flat(alone_state)):
                torch.testing.assert_close(got[:, b], want[:, 0], atol=1e-5, rtol=1e-5)


def test_each_gru_form_takes_its_own_kernel_and_says_so():
    assert Recurrent("gru", 8, 16, num_layers=2).paths() == ["fused", "fused"]
    assert Recurrent("gru", 8, 16, cell_options={"reset_after": True}).paths() == ["fused"]
    assert Recurrent("gru", 8, 16, backend="loop").paths() == ["loop"]


def test_initial_state_is_used_and_layout_is_torch_like():
    layer = Recurrent("lstm", 8, 16, num_layers=3, bidirectional=True)
    x = torch.randn(2, 5, 8)
    out, (h, c) = layer(x)
    assert out.shape == (2, 5, 32) and h.shape == c.shape == (6, 2, 16)
    torch.testing.assert_close(out[:, -1, :16], h[4])  # last layer, forward direction
    torch.testing.assert_close(out[:, 0, 16:], h[5])  # last layer, reverse direction ends at t=0
    out2, _ = layer(x, (torch.ones_like(h), torch.ones_like(c)))
    assert not torch.allclose(out, out2)


def test_dropout_between_layers_only_in_training():
    layer = Recurrent("rnn", 8, 16, num_layers=2, dropout=0.5)
    x = torch.randn(2, 5, 8)
    layer.eval()
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    layer.train()
    torch.manual_seed(0)
    a = layer(x)[0]
    torch.manual_seed(1)
    assert not torch.allclose(a, layer(x)[0])


def test_dropout_is_not_applied_after_the_last_layer():
    """Dropout acts between layers only (as torch.nn.LSTM's): one layer has none, and the top
    layer's outputs are never zeroed or rescaled (a dropped output would be exactly 0)."""
    x = torch.randn(4, 6, 8)
    one = Recurrent("rnn", 8, 16, num_layers=1, dropout=0.5).train()
    torch.testing.assert_close(one(x)[0], one.eval()(x)[0], rtol=0, atol=0)
    two = Recurrent("lstm", 8, 16, num_layers=2, dropout=0.5).train()
    torch.manual_seed(0)
    out, (h, _) = two(x)
    assert not (out == 0).any()
    torch.testing.assert_close(out[:, -1], h[-1], rtol=0, atol=0)  # the top layer's state is its output


@pytest.mark.parametrize(
    "kwargs,call,match",
    [
        ({}, lambda m: m(torch.randn(2, 5, 3)), r"\[batch, time, 8\].*got \(2, 5, 3\)"),
        ({}, lambda m: m(torch.randn(5, 8)), r"batch first"),
        ({}, lambda m: m(torch.randn(2, 5, 8), lengths=torch.tensor([5, 0])), r"1\.\.5"),
        ({}, lambda m: m(torch.randn(2, 5, 8), lengths=torch.tensor([5])), r"shape \[2\]"),
    ],
)
def test_user_errors_are_clear(kwargs, call, match):
    with pytest.raises(ValueError, match=match):
        call(Recurrent("lstm", 8, 16, **kwargs))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"num_layers": 0}, "num_layers"), ({"dropout": 1.5}, "dropout"), ({"backend": "cuda"}, "choose one of")],
)
def test_bad_layer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Recurrent("lstm", 8, 16, **kwargs)


@pytest.mark.parametrize("method", ["parallel", "sequential"])
@pytest.mark.parametrize("steps", [1, 2, 7, 64, 1000])
def test_linear_recurrence_matches_the_sequential_loop(steps, method):
    from seqframe.kernels import linear_recurrence

    torch.manual_seed(0)
    a = torch.rand(3, steps, 4, dtype=torch.float64)
    b = torch.randn(3, steps, 4, dtype=torch.float64)
    h0 = torch.randn(3, 4, dtype=torch.float64)
    h, want = h0, []
    for t in range(steps):
        h = a[:, t] * h + b[:, t]
        want.append(h)
    torch.testing.assert_close(linear_recurrence(a, b, h0, method), torch.stack(want, 1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", ["parallel", "sequential"])
def test_linear_recurrence_gradients(method):
    from seqframe.kernels import linear_recurrence

    torch.manual_seed(0)
    inputs = (
        torch.rand(2, 6, 3, dtype=torch.float64),
        torch.randn(2, 6, 3, dtype=torch.float64),
        torch.randn(2, 3, dtype=torch.float64),
    )
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_recurrence(a, b, h0, method), inputs)


@pytest.mark.parametrize("method", ["parallel", "sequential"])
def test_linear_recurrence_is_stable_where_a_cumulative_product_underflows(method):
    from seqframe.kernels import linear_recurrence

    torch.manual_seed(0)
    a = torch.full((1, 1000, 2), 0.3)  # 0.3**1000 underflows float32 long before the end
    b = torch.rand(1, 1000, 2)
    naive = torch.cumprod(a, 1) * torch.cumsum(b / torch.cumprod(a, 1), 1)
    assert not torch.isfinite(naive).all()
    h = linear_recurrence(a, b, method=method)
    assert torch.isfinite(h).all()
    state, want = torch.zeros(1, 2, dtype=torch.float64), []
    for t in range(1000):
        state = 0.3 * state + b[:, t].double()
        want.append(state)
    torch.testing.assert_close(h.double(), torch.stack(want, 1), atol=1e-6, rtol=0)


def test_compile_backend_matches_the_loop():
    """backend=compile (torch.compile of the step loop) computes what the eager loop computes."""
    torch.manual_seed(0)
    compiled = Recurrent("lstm", 3, 4, bidirectional=True, backend="compile")
    loop = Recurrent("lstm", 3, 4, bidirectional=True, backend="loop")
    loop.load_state_dict(compiled.state_dict())
    assert compiled.paths() == ["compile"]
    x = torch.randn(2, 4, 3)
    lengths = torch.tensor([4, 2])
    results = []
    for layer in (compiled, loop):
        inp = x.clone().requires_grad_()
        out, (h, c) = layer(inp, lengths=lengths)
        grads = torch.autograd.grad(out.sum() + c.sum(), [inp, *layer.parameters()])
        results.append((out, h, grads))
    (out_a, h_a, grads_a), (out_b, h_b, grads_b) = results
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_a, h_b, atol=1e-5, rtol=1e-5)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,options", ALL_CELLS + [("mingru", {})])
def test_fast_paths_run_under_mixed_precision_close_to_the_loop(name, options):
    """precision=bf16-mixed runs the layers under autocast: every fast path must run there (the spec GRU's
    kernel keeps its recurrence in float32) and stay within bfloat16's precision of the loop."""
    fast, loop = twin_layers(name, options, 1, False)
    x = torch.randn(4, 12, 8)
    results = []
    for layer in (fast, loop):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = layer(x)
            out.float().square().sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
        results.append(out.float())
    torch.testing.assert_close(results[0], results[1], atol=3e-2, rtol=3e-2)
