"""minGRU: the conformance kit, the paper's equations in NumPy, and the scan at T=1000."""

import numpy as np
import pytest
import torch

from seqframe import Recurrent, create_cell

SEQFRAME_CELLS = ["mingru"]


@pytest.mark.parametrize("method", ["auto", "parallel"])
def test_conformance(seqframe_check, method):
    seqframe_check(scan_method=method)


def numpy_mingru(x, h, w, b, hidden):
    """z = sigmoid(W_z x + b_z), h~ = W_h x + b_h, h = (1 - z) h + z h~ (float64)."""
    outputs = []
    for t in range(x.shape[1]):
        pre = x[:, t] @ w.T + b
        z = 1 / (1 + np.exp(-pre[:, :hidden]))
        h = (1 - z) * h + z * pre[:, hidden:]
        outputs.append(h)
    return np.stack(outputs, 1)


@pytest.mark.parametrize("backend", ["auto", "loop"])
def test_matches_the_papers_equations(backend):
    torch.manual_seed(0)
    layer = Recurrent("mingru", 4, 6, backend=backend).double()
    cell = layer.cells[0]
    x = torch.randn(3, 9, 4, dtype=torch.float64)
    h0 = torch.randn(3, 6, dtype=torch.float64)
    with torch.no_grad():
        out, _ = layer(x, h0[None])
    w, b = cell.proj.weight.detach().numpy(), cell.proj.bias.detach().numpy()
    np.testing.assert_allclose(out.numpy(), numpy_mingru(x.numpy(), h0.numpy(), w, b, 6), atol=1e-10)


@pytest.mark.parametrize("method", ["parallel", "sequential"])
def test_scan_matches_the_loop_and_is_stable_at_t1000(method):
    torch.manual_seed(0)
    fast = Recurrent("mingru", 8, 32, cell_options={"scan_method": method})
    loop = Recurrent("mingru", 8, 32, backend="loop", cell_options={"scan_method": method})
    loop.load_state_dict(fast.state_dict())
    assert fast.paths() == ["fused"]
    x = torch.randn(4, 1000, 8) * 3  # large inputs: gates near 0 and 1, long products underflow
    with torch.no_grad():
        out_scan, h_scan = fast(x)
        out_loop, h_loop = loop(x)
    assert torch.isfinite(out_scan).all()
    torch.testing.assert_close(out_scan, out_loop, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_scan, h_loop, atol=1e-5, rtol=1e-5)


def test_parameter_count():
    assert sum(p.numel() for p in create_cell("mingru", 8, 16).parameters()) == 2 * (8 * 16 + 16)


@pytest.mark.parametrize("method", ["sequential", "parallel"])
def test_scan_gradients_match_the_loop_with_padding(method):
    """Outputs, final state and every gradient (input, h0, weights) of the scan against the step loop."""
    torch.manual_seed(0)
    fast = Recurrent("mingru", 5, 7, cell_options={"scan_method": method}).double()
    loop = Recurrent("mingru", 5, 7, backend="loop").double()
    loop.load_state_dict(fast.state_dict())
    x, h0, lengths = (
        torch.randn(4, 30, 5, dtype=torch.float64),
        torch.randn(1, 4, 7, dtype=torch.float64),
        [30, 1, 17, 29],
    )
    results = []
    for layer in (fast, loop):
        xi, hi = x.clone().requires_grad_(), h0.clone().requires_grad_()
        out, h = layer(xi, hi, lengths=torch.tensor(lengths))
        (out.square().sum() + h.sin().sum()).backward()
        results.append([out, h, xi.grad, hi.grad, *(p.grad for p in layer.parameters())])
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_scan_gradcheck_float64():
    torch.manual_seed(0)
    layer = Recurrent("mingru", 3, 4, cell_options={"scan_method": "sequential"}).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h0: layer(x, h0, lengths=torch.tensor([6, 4]))[0], (x, h0))


def test_auto_runs_generated_kernels_on_a_cpu(monkeypatch):
    """No scan on a CPU with scan_method=auto: the cell runs on kernels generated from its step."""
    from seqframe.core.generated import MODE_ENV

    monkeypatch.setenv(MODE_ENV, "wait")
    torch.manual_seed(0)
    layer = Recurrent("mingru", 4, 6)
    loop = Recurrent("mingru", 4, 6, backend="loop")
    loop.load_state_dict(layer.state_dict())
    x, lengths = torch.randn(3, 7, 4), torch.tensor([7, 3, 5])
    with torch.no_grad():
        out, h = layer(x, lengths=lengths)
        want, want_h = loop(x, lengths=lengths)
    assert layer.paths() == ["generated"] and layer.paths(with_lengths=True) == ["generated"]
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(h, want_h, atol=1e-6, rtol=0)
