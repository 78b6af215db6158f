"""The generated path: any cell without ``scan`` compiled into per-step kernels, one autograd node.

Every check compares with the reference step loop (``backend="loop"``) on the same weights: outputs,
final states and gradients to 1e-5 in float32, gradcheck in float64; and every reason to fall back
is forced once, to show that it leaves the loop's numbers and says why.
"""

from __future__ import annotations

import importlib
import logging

import pytest
import torch
from torch import nn

import seqframe
from seqframe.core import generated
from seqframe.core import inductor_adapter as adapter
from seqframe.testing.checks import check_cell
from seqframe.tools.bench_generated import NewcomerLSTM, TextbookLSTM

# An LSTM as a newcomer writes it: super().__init__() with no sizes, nn.Linear for both matrices,
# chunk, no scan (the benchmark times the same class)
StrangerLSTM = NewcomerLSTM


class IndRNN(seqframe.Cell):
    """One state tensor, an elementwise recurrent weight, an output that is the state itself."""

    name = "indrnn_test"

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.w = nn.Linear(input_size, hidden_size)
        self.u = nn.Parameter(torch.rand(hidden_size))

    def project(self, x):
        return self.w(x)

    def step(self, p_t, h):
        h = torch.relu(p_t + self.u * h)
        return h, h


class StepOnlyLSTM(seqframe.Cell):
    """An LSTM written as ``step`` alone: no ``project`` (each raw step comes in), no ``initial_state``
    (``has_cell_state`` asks for ``(h, c)``), both matrices as ``nn.Linear`` inside ``step``."""

    name = "step_only_lstm"
    has_cell_state = True

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.x2h = nn.Linear(input_size, 4 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 4 * hidden_size)

    def step(self, x, state):
        h, c = state
        i, f, g, o = (self.x2h(x) + self.h2h(h)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ForwardLSTM(seqframe.Cell):
    """``forward`` where seqframe says ``step``, ``initial_state(batch)`` without device or dtype, ``split``."""

    name = "forward_lstm"

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.W = nn.Linear(input_size, 4 * hidden_size)
        self.U = nn.Linear(hidden_size, 4 * hidden_size)

    def initial_state(self, batch_size):
        return (torch.zeros(batch_size, self.hidden_size), torch.zeros(batch_size, self.hidden_size))

    def forward(self, x, hidden):
        h, c = hidden
        i, f, g, o = torch.split(self.W(x) + self.U(h), self.hidden_size, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class CatLSTM(TextbookLSTM):
    """The textbook cell (one Linear named ``gates`` over ``cat([x, h])``: h's gradient is a column slice
    of one product, not a dense tensor), giving its state back as a list."""

    def step(self, x, state):
        h, (h, c) = super().step(x, state)
        return h, [h, c]


@pytest.fixture(autouse=True)
def fresh_cache():
    generated.CACHE.clear()
    yield
    generated.CACHE.clear()


def _twins(cell, seed=0, dtype=torch.float32, **kwargs):
    """The generated path and the loop, on equal weights."""
    torch.manual_seed(seed)
    fast = seqframe.Recurrent(cell, 5, 6, backend="generated", **kwargs).to(dtype)
    loop = seqframe.Recurrent(cell, 5, 6, backend="loop", **kwargs).to(dtype)
    loop.load_state_dict(fast.state_dict())
    return fast, loop


def _run(model, x, state=None, lengths=None):
    model.zero_grad()
    x = x.clone().requires_grad_()
    out, final = model(x, state, lengths)
    finals = final if isinstance(final, tuple) else (final,)
    (out.square().sum() + sum(f.sum() for f in finals)).backward()
    return out.detach(), [f.detach() for f in finals], [p.grad.clone() for p in model.parameters()], x.grad


def _assert_same(a, b, atol=1e-5):
    out_a, fin_a, grads_a, xg_a = a
    out_b, fin_b, grads_b, xg_b = b
    torch.testing.assert_close(out_a, out_b, atol=atol, rtol=0)
    for x, y in zip(fin_a, fin_b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)
    for x, y in zip(grads_a, grads_b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)
    torch.testing.assert_close(xg_a, xg_b, atol=atol, rtol=0)


def test_every_torch_internal_it_uses_is_where_the_adapter_expects():
    """Fails by name when a torch upgrade moves one of them."""
    missing = []
    for what, (module, attribute) in adapter.INTERNALS.items():
        try:
            getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError):
            missing.append(f"{what}: {module}.{attribute}")
    assert not missing, f"torch {torch.__version__} moved: {missing}"
    assert adapter.torch_validated(), f"torch {torch.__version__} is not in VALIDATED_TORCH: check and add it"
    settings = adapter.member("Inductor's settings")
    assert all(hasattr(settings, name) for name in adapter.KERNEL_SETTINGS)


def test_stranger_lstm_matches_the_loop_with_padding_directions_layers_and_a_start_state():
    fast, loop = _twins(StrangerLSTM, num_layers=2, bidirectional=True)
    assert fast.paths() == ["generated", "generated"]
    x = torch.randn(4, 7, 5)
    lengths = torch.tensor([7, 3, 1, 5])
    state = tuple(torch.randn(4, 4, 6) for _ in range(2))
    _assert_same(_run(fast, x, state, lengths), _run(loop, x, state, lengths))
    _assert_same(_run(fast, x), _run(loop, x))
    # another batch size and length: new kernels for the batch, none for the length
    x2 = torch.randn(3, 11, 5)
    _assert_same(_run(fast, x2), _run(loop, x2))
    assert fast.paths() == ["generated", "generated"]


def test_a_cell_of_step_alone_is_torch_lstm_on_every_path():
    """torch.nn.LSTM's gate order is i, f, g, o, as the cell's chunk: its weights copied in, the same numbers."""
    reference = nn.LSTM(5, 6, batch_first=True)
    fast, loop = _twins(StepOnlyLSTM)
    with torch.no_grad():
        for model in (fast, loop):
            cell = model.cells[0]
            cell.x2h.weight.copy_(reference.weight_ih_l0), cell.x2h.bias.copy_(reference.bias_ih_l0)
            cell.h2h.weight.copy_(reference.weight_hh_l0), cell.h2h.bias.copy_(reference.bias_hh_l0)
    assert StepOnlyLSTM(5, 6).initial_state(3)[1].shape == (3, 6)  # (h, c) by default
    x = torch.randn(4, 7, 5)
    expected, (h_n, c_n) = reference(x)
    for model in (fast, loop):
        out, (h, c) = model(x)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close((h, c), (h_n, c_n), atol=1e-5, rtol=0)
    assert fast.paths() == ["generated"]
    lengths = torch.tensor([7, 3, 1, 5])
    _assert_same(_run(fast, x, lengths=lengths), _run(loop, x, lengths=lengths))
    check_cell(StepOnlyLSTM)  # and the conformance kit passes it (it raises on any failed check)


def test_a_cell_written_as_forward_with_a_plain_initial_state_is_torch_lstm_in_float64():
    reference = nn.LSTM(5, 6, batch_first=True).double()
    model = seqframe.Recurrent(ForwardLSTM, 5, 6, backend="loop").double()
    cell = model.cells[0]
    with torch.no_grad():
        cell.W.weight.copy_(reference.weight_ih_l0), cell.W.bias.copy_(reference.bias_ih_l0)
        cell.U.weight.copy_(reference.weight_hh_l0), cell.U.bias.copy_(reference.bias_hh_l0)
    assert cell.initial_state(3, dtype=torch.float64)[0].dtype == torch.float64  # moved where it was asked
    x = torch.randn(4, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(model(x)[0], reference(x)[0], atol=1e-12, rtol=0)
    check_cell(ForwardLSTM)

    class Halved(ForwardLSTM):  # a subclass's own forward is its step, not its parent's
        def forward(self, x, hidden):
            return super().forward(0.5 * x, hidden)

    halved, x_t = Halved(5, 6), torch.randn(2, 5)
    state = halved.initial_state(2)
    torch.testing.assert_close(halved.step(x_t, state)[0], ForwardLSTM.forward(halved, 0.5 * x_t, state)[0])
    torch.testing.assert_close(halved(x_t, state)[0], halved.step(x_t, state)[0])


def test_a_concatenating_cell_gets_the_loops_gradients_from_the_kernels():
    """The kernels once misread a column slice as dense: its gradients were wrong from the second step back."""
    fast, loop = _twins(CatLSTM, num_layers=2, bidirectional=True)
    assert isinstance(fast.cells[0].gates, nn.Linear) and CatLSTM.gates == 0  # the module, not the metadata
    x, lengths = torch.randn(4, 7, 5), torch.tensor([7, 3, 1, 5])
    _assert_same(_run(fast, x), _run(loop, x))
    _assert_same(_run(fast, x, lengths=lengths), _run(loop, x, lengths=lengths))
    assert fast.paths() == ["generated", "generated"]  # a list for the (h, c) tuple is the same state


def test_a_cell_whose_output_is_its_state_and_float64_gradcheck():
    fast, loop = _twins(IndRNN, dtype=torch.float64)
    x = torch.randn(3, 5, 5, dtype=torch.float64)
    _assert_same(_run(fast, x), _run(loop, x), atol=1e-10)
    weights = list(fast.parameters())

    names = [n for n, _ in fast.named_parameters()]

    def outputs(inp, *ws):
        return torch.func.functional_call(fast, dict(zip(names, ws)), (inp,), {"lengths": torch.tensor([5, 2, 4])})[0]

    assert torch.autograd.gradcheck(outputs, (x.requires_grad_(), *weights))


def test_time_checkpoint_runs_the_generated_kernels_chunk_by_chunk():
    fast, loop = _twins(StrangerLSTM, time_checkpoint=3)
    x = torch.randn(2, 8, 5)
    _assert_same(_run(fast, x), _run(loop, x))


def test_bf16_autocast_runs_the_kernels_traced_under_autocast():
    fast, loop = _twins(StrangerLSTM)
    x = torch.randn(3, 6, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_fast, _ = fast(x)
        out_loop, _ = loop(x)
    assert generated.status(fast.cells[0]) == "generated"
    assert out_fast.dtype == out_loop.dtype
    torch.testing.assert_close(out_fast.float(), out_loop.float(), atol=2e-2, rtol=0)


def test_auto_runs_the_loop_while_building_then_switches(caplog):
    torch.manual_seed(0)
    model = seqframe.Recurrent(IndRNN, 5, 6)  # backend=auto: IndRNN has no scan
    x = torch.randn(2, 4, 5)
    with caplog.at_level(logging.INFO, logger="seqframe"):
        before, _ = model(x)
        assert model.paths()[0] in ("loop (generated: compiling)", "generated")
        generated.CACHE.wait()
        after, _ = model(x)
    assert model.paths() == ["generated"]
    torch.testing.assert_close(before, after, atol=1e-6, rtol=0)
    messages = [r.getMessage() for r in caplog.records]
    assert any("building generated step kernels for cell 'indrnn_test'" in m for m in messages)
    assert any("ready after" in m for m in messages)


class Branchy(IndRNN):
    name = "branchy"

    def step(self, p_t, h):
        if (h > 0).any():  # Python control flow on a tensor's value
            return torch.tanh(p_t + self.u * h), torch.tanh(p_t + self.u * h)
        return torch.tanh(p_t), torch.tanh(p_t)


class InPlace(IndRNN):
    name = "inplace"

    def step(self, p_t, h):
        h.mul_(0.5)  # changes the caller's state
        out = torch.tanh(p_t + self.u * h)
        return out, out


class Noisy(IndRNN):
    name = "noisy"

    def step(self, p_t, h):
        out = torch.tanh(p_t + self.u * h + 0.01 * torch.randn_like(h))
        return out, out


class Widening(IndRNN):
    name = "widening"

    def step(self, p_t, h):
        out = torch.tanh(p_t + self.u * h).double()
        return out, out


@pytest.mark.parametrize(
    "cell, reason",
    [
        (Branchy, "could not be traced"),
        (InPlace, "in place"),
        (Noisy, "random numbers"),
        (Widening, "turns a state of torch.float32"),
    ],
)
def test_what_the_kernels_cannot_reproduce_falls_back_to_the_loop_with_a_reason(cell, reason, caplog):
    torch.manual_seed(0)
    model = seqframe.Recurrent(cell, 5, 6, backend="generated")
    loop = seqframe.Recurrent(cell, 5, 6, backend="loop")
    loop.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, 5)
    with caplog.at_level(logging.WARNING, logger="seqframe"):
        if cell is Noisy:
            torch.manual_seed(1)
        out, _ = model(x)
    assert model.paths()[0].startswith("loop (generated: failed: ") and reason in model.paths()[0]
    assert sum(f"cell {cell.name!r} stays on the step loop" in r.getMessage() for r in caplog.records) == 1
    if cell is Noisy:
        torch.manual_seed(1)
    expected, _ = loop(x)
    assert torch.equal(out, expected)  # the loop's numbers, not approximately
    model(x)  # remembered: no second build, no second warning
    assert sum("stays on the step loop" in r.getMessage() for r in caplog.records) == 1


def test_an_unvalidated_torch_falls_back(monkeypatch):
    monkeypatch.setattr(adapter, "VALIDATED_TORCH", ())
    monkeypatch.delenv(adapter.UNVALIDATED_ENV, raising=False)
    model = seqframe.Recurrent(IndRNN, 5, 6, backend="generated")
    model(torch.randn(2, 3, 5))
    assert "is not validated for generated kernels" in model.paths()[0]
    monkeypatch.setenv(adapter.UNVALIDATED_ENV, "1")
    generated.CACHE.clear()
    model(torch.randn(2, 3, 5))
    assert model.paths() == ["generated"]


def test_a_moved_compiler_uses_the_public_one_and_with_both_gone_the_loop(monkeypatch):
    internals = dict(adapter.INTERNALS)
    internals["one-graph compiler"] = ("torch._inductor.compile_fx", "moved_away")
    monkeypatch.setattr(adapter, "INTERNALS", internals)
    fast, loop = _twins(IndRNN)
    x = torch.randn(2, 3, 5)
    _assert_same(_run(fast, x), _run(loop, x))
    assert fast.paths() == ["generated"]
    kernels = generated.CACHE.ready[generated._plans[fast.cells[0]].last_key]
    assert kernels.compiler == "public"
    internals["public one-graph compiler"] = ("torch._inductor", "moved_away_too")
    generated.CACHE.clear()
    fast(x)
    assert fast.paths()[0].startswith("loop (generated: failed: ") and "moved_away_too" in fast.paths()[0]


def test_a_failing_compiler_falls_back(monkeypatch):
    def broken(gm, inputs):
        raise RuntimeError("C++ compiler exploded")

    monkeypatch.setattr(adapter, "COMPILERS", {"inner": broken, "public": broken})
    fast, loop = _twins(IndRNN)
    x = torch.randn(2, 3, 5)
    assert torch.equal(fast(x)[0], loop(x)[0])
    assert "C++ compiler exploded" in fast.paths()[0]


def test_off_keeps_auto_on_the_loop(monkeypatch):
    monkeypatch.setenv(generated.MODE_ENV, "off")
    assert seqframe.Recurrent(IndRNN, 5, 6).paths() == ["loop"]
    monkeypatch.setenv(generated.MODE_ENV, "sometimes")
    with pytest.raises(ValueError, match="SEQFRAME_GENERATED='sometimes' is not valid"):
        seqframe.Recurrent(IndRNN, 5, 6).paths()


def test_a_library_cut_short_in_the_compiler_cache_is_removed_and_built_again(monkeypatch, tmp_path):
    """A process killed while Inductor wrote a kernel leaves a truncated .so that fails every later
    load of that graph ("file too short"): the adapter deletes it and compiles once more."""
    torn = tmp_path / "c66sdd.main.so"
    torn.write_bytes(b"\x7fELF")
    calls = []

    def compiler(gm, inputs):
        calls.append(torn.exists())
        if torn.exists():
            raise ImportError(f"{torn}: file too short")
        return lambda args: ["ok"]

    monkeypatch.setattr(adapter, "COMPILERS", {"inner": compiler})
    gm = torch.fx.symbolic_trace(lambda x: x + 1)
    monkeypatch.setattr(adapter, "example_inputs", lambda gm: [])
    kernel, name = adapter.compile_graph(gm, compilers=("inner",))
    assert (kernel([]), name, calls) == (["ok"], "inner", [True, False]) and not torn.exists()


def test_a_deterministic_training_run_waits_for_the_kernels(monkeypatch):
    from seqframe.harness.train import wait_for_generated_kernels

    monkeypatch.setenv(generated.MODE_ENV, "background")  # so that monkeypatch restores it after the test
    monkeypatch.delenv(generated.MODE_ENV)
    wait_for_generated_kernels(False)
    assert generated.mode() == "background"
    wait_for_generated_kernels(True)
    assert generated.mode() == "wait"
    model = seqframe.Recurrent(IndRNN, 5, 6)  # backend=auto, yet the first call already runs the kernels
    model(torch.randn(2, 3, 5))
    assert model.paths() == ["generated"]


def test_inference_alone_starts_no_build_but_uses_built_kernels():
    model = seqframe.Recurrent(IndRNN, 5, 6)  # backend=auto, in the background
    x = torch.randn(2, 3, 5)
    with torch.no_grad():
        model(x)
    assert model.paths() == ["generated"] and generated.status(model.cells[0]) == "not built"
    model(x)  # a training call starts the build
    generated.CACHE.wait()
    with torch.no_grad():
        model(x)
    assert generated.status(model.cells[0]) == "generated"
