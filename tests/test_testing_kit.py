"""The conformance kit itself: good cells pass, each kind of broken cell fails with its own message."""

import pytest
import torch
from torch import nn

import seqframe
from seqframe.testing import CHECKS, ConformanceError, check_cell, run_check


class TinyCell(seqframe.Cell):
    """A correct equations-only cell: the base of the broken variants below."""

    name = "tiny"

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.lin = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)

    def project(self, x):
        return self.lin(x)

    def step(self, p_t, state):
        h = torch.tanh(p_t + self.rec(state))
        return h, h


class WrongStateShape(TinyCell):
    def step(self, p_t, state):
        h, _ = super().step(p_t, state)
        return h, torch.cat([h, h[:, :1]], dim=1)


class ScanDisagrees(TinyCell):
    def scan(self, p, state):
        outputs = []
        for p_t in p.unbind(1):
            h, state = self.step(p_t, state)
            outputs.append(h)
        return torch.stack(outputs, 1) * 1.01, state


class UnusedParameter(TinyCell):
    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.forgotten = nn.Parameter(torch.ones(hidden_size))


class MutatesInput(TinyCell):
    def step(self, p_t, state):
        p_t.mul_(1.0)
        return super().step(p_t, state)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_builtin_cells_pass(name):
    check_cell(name)


def test_a_correct_custom_cell_passes_and_options_reach_it():
    check_cell(TinyCell)
    check_cell("gru", {"reset_after": True}, checks=["scan_matches_loop", "lengths_masking"])


BROKEN = {
    WrongStateShape: ("precheck", "the state returned by step() has a tensor of shape (2, 6)"),
    ScanDisagrees: ("scan_matches_loop", "scan() outputs differ from the loop over step()"),
    UnusedParameter: ("gradients_reach_parameters", "parameter 'forgotten' gets no gradient"),
    MutatesInput: ("no_input_mutation", "step(p_t, state) modified its input in place"),
}


@pytest.mark.parametrize("cell", list(BROKEN), ids=lambda c: c.__name__)
def test_each_broken_cell_fails_with_its_own_message(cell):
    check, message = BROKEN[cell]
    with pytest.raises(ConformanceError) as error:
        check_cell(cell)
    report = str(error.value)
    assert f"[{check}] cell 'tiny': {message}" in report
    for other, (_, other_message) in BROKEN.items():
        if other is not cell:
            assert other_message not in report
    with pytest.raises(ConformanceError, match=r"^cell 'tiny': "):
        run_check(cell, check)


class RecurrentDropout(TinyCell):
    """Dropout on the state inside ``step``: random in training, the plain cell in eval mode."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.drop = nn.Dropout(0.3)

    def step(self, p_t, state):
        return super().step(p_t, self.drop(state))


class AlwaysRandom(TinyCell):
    def step(self, p_t, state):
        return super().step(p_t + 0.1 * torch.rand_like(p_t), state)


def test_a_cell_with_dropout_in_step_is_checked_in_eval_mode_and_told_so():
    skipped = check_cell(RecurrentDropout)
    assert any(note.startswith("[train_mode] step draws random numbers in training mode") for note in skipped)
    assert not any(note.startswith("[train_mode]") for note in check_cell(TinyCell))
    with pytest.raises(ConformanceError, match=r"\[deterministic\] .*different outputs in eval mode"):
        check_cell(AlwaysRandom)  # random in eval mode too: a real failure


def test_unknown_check_and_bad_options_are_refused():
    with pytest.raises(ValueError, match="the checks are"):
        check_cell("lstm", checks=["speed"])
    with pytest.raises(seqframe.CellOptionError, match="forget_bias"):
        check_cell("lstm", {"forgetbias": 1.0})


def test_pytest_fixture_runs_one_test_per_check(pytester):
    pytester.makepyfile(
        test_cells="""
        SEQFRAME_CELLS = ["rnn"]

        def test_conformance(seqframe_check):
            seqframe_check()
        """
    )
    result = pytester.runpytest_subprocess("-q")
    gpu = torch.cuda.is_available()  # without one the cuda check is a skip, with its reason
    # rnn runs torch's fused kernel on every batch, so the generated-path check is a skip too
    result.assert_outcomes(passed=len(CHECKS) - 1 - (not gpu), skipped=1 + int(not gpu))


def test_pytest_fixture_without_cells_is_a_usage_error(pytester):
    pytester.makepyfile(test_nothing="def test_conformance(seqframe_check):\n    seqframe_check()\n")
    result = pytester.runpytest_subprocess("-q")
    assert result.ret != 0
    assert "names no cell: set SEQFRAME_CELLS" in result.stdout.str() + result.stderr.str()


def test_the_plugin_adds_no_autouse_fixture(pytester):
    pytester.makepyfile(test_plain="def test_plain(request):\n    assert request.fixturenames == ['request']\n")
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=1)
    assert "seqframe" in pytester.runpytest_subprocess("--trace-config", "-q").stdout.str()
