"""The conformance kit's first contact (issue 15, item 1): a pre-check that reports one sentence
instead of a cascade, hints only for what the cell has, a device check that needs no GPU, and
skips shown as skips."""

import pytest
import torch
from distributions import make_distribution
from torch import nn

import seqframe
from seqframe.testing import CHECKS, CellUnderTest, CheckSkipped, ConformanceError, check_cell, precheck, run_check


class Plain(seqframe.Cell):
    """A correct cell written the short way; the faulty variants below change one thing each."""

    name = "plain"

    def __init__(self, input_size: int, hidden_size: int, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta
        self.lin = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)

    def project(self, x):
        return self.lin(x)

    def step(self, p_t, state):
        h = torch.tanh(p_t + self.rec(state)) * self.beta
        return h, h


class NoSuperInit(Plain):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        self.lin = nn.Linear(input_size, hidden_size)


class NoDefault(Plain):
    def __init__(self, input_size: int, hidden_size: int, beta: float) -> None:
        super().__init__(input_size, hidden_size, beta)


class NoHint(Plain):
    def __init__(self, input_size: int, hidden_size: int, beta=2.0) -> None:
        super().__init__(input_size, hidden_size, beta)


class Shouting(Plain):
    name = "JANET"


class TakenName(Plain):
    name = "gru"


class ListState(Plain):
    def initial_state(self, batch, device=None, dtype=None):
        return [torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)]


class StepReturnsOne(Plain):
    def step(self, p_t, state):
        return super().step(p_t, state)[0]


class WideOutput(Plain):
    def step(self, p_t, state):
        h, _ = super().step(p_t, state)
        return torch.cat([h, h], 1), h


class Raises(Plain):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        raise RuntimeError("no weights today")


PRECHECK_MESSAGES = {
    NoSuperInit: "__init__ must call super().__init__() before it assigns parameters or layers",
    NoDefault: "option 'beta' has no default",
    NoHint: "option 'beta' has no type hint; write it as beta: float = 2.0",
    Shouting: "the name 'JANET' must be lower case letters",
    TakenName: "the name 'gru' is already the cell seqframe.core.cells.gru",
    ListState: "initial_state() returned a list; return a tensor [batch, S] or a tuple of them",
    StepReturnsOne: "step(p_t, state) must return a pair (h_t, new_state), got Tensor",
    WideOutput: "step() must return h_t [2, 5] (batch, hidden_size), got (2, 10)",
    Raises: "Raises(3, 5) raised RuntimeError: no weights today",
}


@pytest.mark.parametrize("cell", list(PRECHECK_MESSAGES), ids=lambda c: c.__name__)
def test_each_precheck_failure_is_one_sentence_and_nothing_else_runs(cell):
    with pytest.raises(ConformanceError) as error:
        check_cell(cell)
    report = str(error.value)
    assert report.startswith("the pre-check failed, so no other check ran:\n[precheck] cell ")
    assert PRECHECK_MESSAGES[cell] in report, report
    assert report.count("\n") == 1 and "Traceback" not in report and "[shapes_and_dtypes]" not in report
    with pytest.raises(CheckSkipped, match="^the pre-check failed: "):  # every other check is a skip
        run_check(cell, "learns")


def test_the_short_form_passes_the_whole_kit_and_options_reach_it():
    skipped = check_cell(Plain, {"beta": 0.5})
    assert skipped == ([] if torch.cuda.is_available() else [f"[cuda] {no_gpu()}"])


def no_gpu():
    return "no CUDA GPU here: .cuda() was not run (the meta_device check still ran)"


def test_cuda_is_a_skip_with_its_reason_without_a_gpu():
    if torch.cuda.is_available():
        run_check(Plain, "cuda")
    else:
        with pytest.raises(CheckSkipped, match="no CUDA GPU here"):
            run_check(Plain, "cuda")


class HostConstant(Plain):
    def step(self, p_t, state):
        h, _ = super().step(p_t, state)
        h = h * torch.tensor([self.beta])  # stays on the CPU when the model moves
        return h, h


class TensorIf(Plain):
    def step(self, p_t, state):
        h, _ = super().step(p_t, state)
        if (h > 0).any():  # a Python branch on a tensor's value
            h = h * 0.5
        return h, h


@pytest.mark.parametrize(
    "cell,message",
    [
        (HostConstant, "step(p_t, state) creates a tensor on the CPU while its inputs are on another device"),
        (HostConstant, "self.register_buffer('beta', torch.tensor([beta]))"),
        (TensorIf, "step(p_t, state) turns a tensor's value into a Python value (an `if`"),
        (TensorIf, "torch.where(condition, a, b)"),
    ],
)
def test_the_cpu_only_device_check_catches_host_constants_and_tensor_valued_ifs(cell, message):
    precheck(CellUnderTest.resolve(cell))  # both pass on a CPU, where the other checks run
    with pytest.raises(ConformanceError) as error:
        check_cell(cell)
    report = str(error.value)
    assert "\n[meta_device] " in report and message in report, report
    if cell is HostConstant:  # on a CPU everything else passes; TensorIf's `any()` also mixes the batch
        assert report.startswith("1 conformance check(s) failed:\n[meta_device] "), report


class MixesTheBatch(Plain):
    def step(self, p_t, state):
        h, _ = super().step(p_t, state)
        h = h - h.mean(0, keepdim=True) * 0.1  # batch statistics: padding leaks between rows
        return h, h


class MixingScan(MixesTheBatch):
    def scan(self, p, state, lengths=None):
        outputs = []
        for p_t in p.unbind(1):
            h, state = self.step(p_t, state)
            outputs.append(h)
        return torch.stack(outputs, 1), state


@pytest.mark.parametrize("cell,scan", [(MixesTheBatch, False), (MixingScan, True)], ids=["loop", "scan"])
def test_hints_name_only_what_the_cell_has(cell, scan):
    with pytest.raises(ConformanceError) as error:
        run_check(cell, "lengths_masking")
    message = str(error.value)
    assert ("a scan taking `lengths`" in message) is scan
    assert ("step must treat each batch row on its own" in message) is not scan


CONFORMANCE_TEST = """
import pytest

SEQFRAME_CELLS = ["{cell}"]


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_conformance(seqframe_check, beta):
    seqframe_check(beta=beta)
"""

BROKEN_PLUGIN = """
import torch
import seqframe


class Broken(seqframe.Cell):
    name = "brokenstate"

    def __init__(self, input_size: int, hidden_size: int, beta: float = 1.0) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(input_size, hidden_size)

    def project(self, x):
        return self.lin(x)

    def initial_state(self, batch, device=None, dtype=None):
        return torch.zeros(batch, 2 * self.hidden_size, device=device, dtype=dtype)

    def step(self, p_t, state):
        return torch.tanh(p_t), torch.tanh(p_t)


@seqframe.hookimpl
def seqframe_cells():
    return [Broken]
"""


def test_the_fixture_reports_the_precheck_once_and_skips_the_rest_with_its_reason(pytester, monkeypatch):
    site = pytester.path / "site"
    make_distribution(site, "sf-test-brokenstate", "0.1", {"sf_bs": "sf_test_bs"}, {"sf_test_bs": BROKEN_PLUGIN})
    monkeypatch.setenv("PYTHONPATH", str(site))
    pytester.makepyfile(test_broken=CONFORMANCE_TEST.format(cell="brokenstate"))
    result = pytester.runpytest_subprocess("-q", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2, skipped=2 * (len(CHECKS) - 1))
    out = result.stdout.str()
    assert "the state returned by step() has a tensor of shape (2, 5)" in out
    assert "SKIPPED" in out and "the pre-check failed: cell 'brokenstate': the state returned by step()" in out
    assert out.count("Traceback") == 0


def test_the_fixture_passes_options_on(pytester):
    pytester.makepyfile(
        test_gru="""
        import pytest

        SEQFRAME_CELLS = ["gru"]


        @pytest.mark.parametrize("reset_after", [False, True])
        def test_conformance(seqframe_check, reset_after):
            seqframe_check(reset_after=reset_after, init="nosuchinit")
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", "-k", "precheck")
    result.assert_outcomes(failed=2)  # the options reached the cell: its constructor refuses the init
    assert "nosuchinit" in result.stdout.str()
