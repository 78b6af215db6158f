"""minGRU: the conformance kit, the paper's equations in NumPy, and the scan at T=1000."""

import numpy as np
import pytest
import torch

from seqframe import Recurrent, create_cell

SEQFRAME_CELLS = ["mingru"]


def test_conformance(seqframe_check):
    seqframe_check()


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


def test_parallel_scan_matches_the_loop_and_is_stable_at_t1000():
    torch.manual_seed(0)
    fast = Recurrent("mingru", 8, 32)
    loop = Recurrent("mingru", 8, 32, backend="loop")
    loop.load_state_dict(fast.state_dict())
    assert fast.paths() == ["scan"]
    x = torch.randn(4, 1000, 8) * 3  # large inputs: gates near 0 and 1, long products underflow
    with torch.no_grad():
        out_scan, h_scan = fast(x)
        out_loop, h_loop = loop(x)
    assert torch.isfinite(out_scan).all()
    torch.testing.assert_close(out_scan, out_loop, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_scan, h_loop, atol=1e-5, rtol=1e-5)


def test_parameter_count():
    assert sum(p.numel() for p in create_cell("mingru", 8, 16).parameters()) == 2 * (8 * 16 + 16)
