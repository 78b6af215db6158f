"""The plugin author's path (issue 15, item 1): a cell written as ``nn.Module`` authors write it
(``super().__init__()`` with no sizes, ``nn.Linear``, ``chunk(4)``) works everywhere; a plugin whose
cell cannot become a config is listed as broken with its reason and breaks no other cell's run; a
sweep compares a plugin's option with a baseline cell that lacks it in one command; ``seqframe cells``
shows options and says so when a pattern matches nothing."""

import json
import sys

import pytest
import torch
from distributions import make_distribution
from runs import BIN, attempt, summary, tiny

import seqframe
from seqframe.errors import CellOptionError, PluginWarning, SeqframeError, UnknownCellError
from seqframe.harness.cell_configs import register_cell_configs
from seqframe.harness.command_line import check_command_line
from seqframe.harness.train import config_dir

CONF = config_dir()

# A JANET-like cell as a stranger writes it: no sizes to super(), nn.Linear, chunk(4), no scan.
STRANGER = """
import torch
from torch import nn
import seqframe


class Janet(seqframe.Cell):
    name = "janet"

    def __init__(self, input_size, hidden_size, beta: float = 1.0):
        super().__init__()
        self.beta = beta
        self.w = nn.Linear(input_size, 4 * hidden_size)
        self.u = nn.Linear(hidden_size, 4 * hidden_size, bias=False)

    def project(self, x):
        return self.w(x)

    def step(self, p_t, state):
        i, f, g, o = (p_t + self.u(state)).chunk(4, -1)
        h = torch.sigmoid(f - self.beta) * state + torch.sigmoid(i) * torch.tanh(g) * torch.sigmoid(o)
        return h, h


@seqframe.hookimpl
def seqframe_cells():
    return [Janet]
"""

# Two refused cells beside a healthy one in a single plugin: an option without a default, an upper-case name.
REFUSED = """
import seqframe
from sf_test_janet import Janet


class Healthy(Janet):
    name = "healthy"


class NoDefault(Janet):
    name = "nodefault"

    def __init__(self, input_size, hidden_size, beta: float, gamma: float = 0.5):
        super().__init__(input_size, hidden_size, beta)


class Shouting(Janet):
    name = "JANET"


@seqframe.hookimpl
def seqframe_cells():
    return [Healthy, NoDefault, Shouting]
"""


def install(site):
    """The stranger's plugin and the plugin with refused cells, as real distributions under ``site``."""
    make_distribution(site, "sf-test-janet", "0.1", {"sf_janet": "sf_test_janet"}, {"sf_test_janet": STRANGER})
    make_distribution(site, "sf-test-mixed", "0.3", {"sf_mixed": "sf_test_mixed"}, {"sf_test_mixed": REFUSED})
    return site


@pytest.fixture
def site(tmp_path, monkeypatch, fresh_registry):
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("sf_test_")]:
        monkeypatch.delitem(sys.modules, name)
    return install(tmp_path)


# ---------------------------------------------------------------- super().__init__() without sizes


def test_super_init_without_sizes_through_create_cell_and_recurrent(site):
    with pytest.warns(PluginWarning):
        cell = seqframe.create_cell("janet", 3, 5, beta=2.0)
    assert (cell.input_size, cell.hidden_size, cell.beta) == (3, 5, 2.0)
    out, state = seqframe.Recurrent("janet", 3, 5, num_layers=2, bidirectional=True)(torch.randn(2, 4, 3))
    assert out.shape == (2, 4, 10) and state.shape == (4, 2, 5)
    janet = seqframe.get_cell("janet")
    assert janet(input_size=3, hidden_size=5).hidden_size == 5  # keywords
    assert janet(3, hidden_size=6, beta=0.5).hidden_size == 6


def test_sizes_reach_subclasses_of_subclasses_and_explicit_sizes_win():
    class Base(seqframe.Cell):
        name = "base"

        def __init__(self, input_size: int, hidden_size: int, a: int = 1) -> None:
            seen.append((self.input_size, self.hidden_size))  # readable before the super call
            super().__init__()
            self.lin = torch.nn.Linear(input_size, hidden_size)

    class Sub(Base):
        def __init__(self, n_in: int, n_out: int, b: int = 2) -> None:
            super().__init__(n_in, n_out, a=b)

    class Wide(seqframe.Cell):
        def __init__(self, input_size: int, hidden_size: int) -> None:
            super().__init__(input_size, 2 * hidden_size)

    seen = []
    assert (Sub(3, 4).input_size, Sub(n_out=7, n_in=2).hidden_size) == (3, 7)
    assert seen[0] == (3, 4)
    assert Wide(3, 4).hidden_size == 8
    with pytest.raises(TypeError, match="the sizes are unknown"):
        seqframe.Cell()


# ---------------------------------------------------------------- cells that cannot become a config


def test_a_cell_that_cannot_be_configured_is_listed_with_its_reason(site):
    with pytest.warns(PluginWarning) as record:
        names = [c.name for c in seqframe.list_cells()]
    assert {"janet", "healthy", "gru", "lstm"} <= set(names)  # the refused cells' plugin keeps its healthy one
    assert "nodefault" not in names and "JANET" not in names
    broken = {b.cell: b.error for b in seqframe.broken_plugins()}
    assert "option 'beta' has no default" in broken["nodefault"] and "cell.beta" in broken["nodefault"]
    assert "lower case" in broken["JANET"] and "use 'janet'" in broken["JANET"]
    assert any("sf-test-mixed 0.3" in str(w.message) for w in record)
    with pytest.raises(UnknownCellError, match="'nodefault' of entry point 'sf_mixed'.*has no default"):
        seqframe.get_cell("nodefault")


def test_an_option_default_no_config_can_hold_is_refused(fresh_registry):
    from seqframe.core.registry import check_cell_class

    class Activation(seqframe.Cell):
        name = "activation"

        def __init__(self, input_size: int, hidden_size: int, act=torch.tanh) -> None:
            super().__init__()

    assert "option 'act' has the default" in check_cell_class(Activation)
    assert "a config cannot hold" in check_cell_class(Activation)


def test_seqframe_cells_lists_options_broken_cells_and_refuses_a_pattern_matching_nothing(site):
    listed = attempt(["cells"], site, exe=BIN / "seqframe", pythonpath=site)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    assert "beta=1.0: float" in rows["janet"] and "reset_after=False: bool, init='keras': str" in rows["gru"]
    assert "option 'beta' has no default" in listed.stdout and "lower case" in listed.stdout
    as_json = json.loads(attempt(["cells", "jan*", "--json"], site, exe=BIN / "seqframe", pythonpath=site).stdout)
    assert [(c["name"], c["options"]) for c in as_json["cells"]] == [("janet", "beta=1.0: float")]
    missed = attempt(["cells", "janett"], site, exe=BIN / "seqframe", pythonpath=site)
    assert missed.returncode == 1
    assert "no cell matches 'janett'; did you mean janet?" in missed.stderr and "params@" not in missed.stdout


# ---------------------------------------------------------------- an option against a baseline, in one sweep


def test_a_sweep_gives_an_option_to_the_cells_that_take_it(site):
    with pytest.warns(PluginWarning):
        register_cell_configs(CONF)
    argv = check_command_line(["-m", "cell=gru,janet", "cell.beta=1.0,2.0", "cell.init=torch"], CONF)
    assert argv == ["-m", "cell=gru,janet", "++cell.beta=1.0,2.0", "++cell.init=torch"]
    with pytest.raises(SeqframeError) as refused:
        check_command_line(["-m", "cell=gru,janet", "cell.betta=2.0"], CONF)
    assert "cell.betta is an option of none of the swept cells; did you mean beta?" in str(refused.value)
    with pytest.raises(CellOptionError, match="cell 'gru' has no option 'beta'"):  # one cell: refused as ever
        check_command_line(["-m", "cell=gru", "cell.beta=2.0"], CONF)
    with pytest.raises(CellOptionError, match="cell 'gru' has no option 'beta'"):
        check_command_line(["cell=gru", "cell.beta=2.0"], CONF)


def test_option_against_baseline_in_one_command_beside_a_broken_plugin(site):
    """One real ``seqframe-train -m``: the stranger's cell (no-argument super) with beta=2 against gru,
    which drops beta and says so, while a plugin with refused cells is installed beside them."""
    args = ["-m", "cell=janet,gru", "cell.beta=2.0", "model.hidden_size=8", *tiny(), "hydra.sweep.dir=sweep"]
    result = attempt(args, site, pythonpath=site)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "option 'beta' has no default" in result.stderr  # the broken plugin is reported, and skipped
    janet, gru = (summary(site / "sweep" / str(job)) for job in (0, 1))
    assert janet["status"] == gru["status"] == "finished"
    assert (janet["cell"], janet["cell_options"]["beta"]) == ("janet", 2.0)
    assert gru["cell"] == "gru" and "beta" not in gru["cell_options"]
    assert "cell 'gru' has no option beta: cell.beta=2.0 is for the other cells of this sweep" in result.stdout
    saved = (site / "sweep" / "1" / ".hydra" / "config.yaml").read_text()
    assert saved.startswith("# cell 'gru' has no option beta") and "beta:" not in saved.split("\n", 1)[1]


# ---------------------------------------------------------------- a stranger's cell, exported


def test_a_strangers_cell_exports_for_any_length_and_step_by_step(site, tmp_path):
    """The no-argument-super, nn.Linear, chunk(4) cell through both exports (pt2), traced at 4 steps:
    the whole-sequence model keeps its loop (run at 1 and 9 steps), the step model streams 12 steps."""
    from seqframe.harness.model import SequenceModel
    from seqframe.runs.deployable import AnyLengthDeployable, Deployable, StepDeployable
    from seqframe.runs.export import _write, example_inputs, step_gap, write_any_length

    task = {"task": "regress", "num_outputs": 2, "input_size": 4, "monitor": "val/mse", "mode": "min"}
    with pytest.warns(PluginWarning):
        model = SequenceModel(task, {"name": "janet", "beta": 2.0}, hidden_size=6, num_layers=2).eval()
    state = {"mean": [1.0, 2.0, 3.0, 4.0], "std": [2.0, 1.0, 0.5, 1.0]}
    with torch.no_grad():
        exported, written, unrolled = write_any_length(
            "pt2", AnyLengthDeployable(model, state), *example_inputs(model, 3, 4), tmp_path / "whole.pt2"
        )
        assert unrolled is None and isinstance(written, AnyLengthDeployable)
        for batch, steps in ((2, 1), (5, 9)):
            x, lengths = example_inputs(model, batch, steps, seed=batch)
            assert (exported(x, lengths) - Deployable(model, state)(x, lengths)).abs().max() <= 1e-5
        step = StepDeployable(model, state)
        streamed = _write("pt2", step, example_inputs(model, 3, 1)[0][:, 0], step.initial_state(3), tmp_path / "s.pt2")
        assert step_gap(streamed, step, 12) <= 1e-5
