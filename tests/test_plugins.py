"""Cell discovery through real entry points of real (throw-away) distributions."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from distributions import good_cell, make_distribution

import seqframe
from seqframe.errors import CellNameConflictError, CellOptionError, PluginWarning, UnknownCellError


@pytest.fixture
def site(tmp_path, monkeypatch, fresh_registry):
    """A directory on sys.path where tests install distributions."""
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("sf_test_")]:
        monkeypatch.delitem(sys.modules, name)
    return tmp_path


def test_builtins_come_from_the_core_distribution(fresh_registry):
    cells = {c.name: c for c in seqframe.list_cells()}
    assert {"rnn", "lstm", "gru"} <= set(cells)
    for name in ("rnn", "lstm", "gru"):
        assert cells[name].distribution == "seqframe"
        assert cells[name].version == seqframe.__version__
        assert cells[name].module == f"seqframe.core.cells.{name}"


def test_plugin_cell_is_found_with_its_distribution(site):
    make_distribution(site, "sf-test-mgu", "1.2.3", {"sf_mgu": "sf_test_mgu"}, {"sf_test_mgu": good_cell("mgu")})
    info = {c.name: c for c in seqframe.list_cells()}["mgu"]
    assert (info.distribution, info.version, info.entry_point, info.module) == (
        "sf-test-mgu",
        "1.2.3",
        "sf_mgu",
        "sf_test_mgu",
    )
    cell = seqframe.create_cell("mgu", 3, 5, scale=0.5)
    assert cell.scale == 0.5
    out, _ = seqframe.Recurrent("mgu", 3, 5)(torch.randn(2, 4, 3))
    assert out.shape == (2, 4, 5)


def test_broken_plugin_warns_and_others_keep_working(site):
    make_distribution(
        site,
        "sf-test-broken",
        "0.1",
        {"sf_broken": "sf_test_broken"},
        {"sf_test_broken": "import does_not_exist_anywhere\n"},
    )
    make_distribution(
        site / "b",
        "sf-test-raises",
        "0.2",
        {"sf_raises": "sf_test_raises"},
        {
            "sf_test_raises": "import seqframe\n\n@seqframe.hookimpl\ndef seqframe_cells():\n"
            "    raise RuntimeError('boom')\n"
        },
    )
    sys.path.insert(0, str(site / "b"))
    try:
        with pytest.warns(PluginWarning) as record:
            names = [c.name for c in seqframe.list_cells()]
    finally:
        sys.path.remove(str(site / "b"))
    assert {"rnn", "lstm", "gru"} <= set(names)
    messages = " ".join(str(w.message) for w in record)
    assert "'sf_broken' of distribution sf-test-broken 0.1" in messages and "does_not_exist_anywhere" in messages
    assert "'sf_raises' of distribution sf-test-raises 0.2" in messages and "boom" in messages
    broken = {b.source.entry_point: b.error for b in seqframe.broken_plugins()}
    assert "ModuleNotFoundError" in broken["sf_broken"] and "RuntimeError: boom" in broken["sf_raises"]


def test_plugin_returning_a_non_cell_is_broken(site):
    make_distribution(
        site,
        "sf-test-bad",
        "0.1",
        {"sf_bad": "sf_test_bad"},
        {"sf_test_bad": "import seqframe\n\n@seqframe.hookimpl\ndef seqframe_cells():\n    return [dict]\n"},
    )
    with pytest.warns(PluginWarning, match="not a subclass of seqframe.Cell"):
        assert "lstm" in [c.name for c in seqframe.list_cells()]


def test_two_cells_with_one_name_name_both_distributions(site):
    make_distribution(site, "sf-test-one", "1.0", {"sf_one": "sf_test_one"}, {"sf_test_one": good_cell("twin", "A")})
    make_distribution(
        site / "two", "sf-test-two", "2.0", {"sf_two": "sf_test_two"}, {"sf_test_two": good_cell("twin", "B")}
    )
    sys.path.insert(0, str(site / "two"))
    try:
        with pytest.warns(PluginWarning, match="twin"):
            seqframe.list_cells()
    finally:
        sys.path.remove(str(site / "two"))
    with pytest.raises(CellNameConflictError) as error:
        seqframe.get_cell("twin")
    message = str(error.value)
    assert "sf-test-one 1.0" in message and "sf-test-two 2.0" in message
    assert "SEQFRAME_DISABLE_PLUGINS=sf_one" in message
    assert "twin" not in [c.name for c in seqframe.list_cells()]
    assert seqframe.get_cell("lstm").name == "lstm"


def test_unknown_name_lists_cells_and_suggests_the_nearest(fresh_registry):
    with pytest.raises(UnknownCellError) as error:
        seqframe.get_cell("lstn")
    message = str(error.value)
    assert "unknown cell 'lstn'" in message and "Did you mean 'lstm'?" in message
    available = message.split("Available cells: ", 1)[1].split(".", 1)[0].split(", ")
    assert {"gru", "lstm", "rnn"} <= set(available) and available == sorted(available)


def test_unknown_option_lists_valid_options(fresh_registry):
    with pytest.raises(CellOptionError, match=r"no option 'forgetbias'.*forget_bias=1\.0, init='keras'"):
        seqframe.create_cell("lstm", 8, 16, forgetbias=2.0)


def test_a_stack_checks_its_cell_options_once_at_lookup(fresh_registry, monkeypatch):
    """Three layers in two directions are six cells, and one check of their options."""
    from seqframe.core import options, registry

    checked = []
    check = options.check_options
    monkeypatch.setattr(registry, "check_options", lambda cls, opts: checked.append(cls.name) or check(cls, opts))
    rnn = seqframe.Recurrent("lstm", 4, 8, num_layers=3, bidirectional=True, cell_options={"forget_bias": 0.5})
    assert len(rnn.cells) == 6 and checked == ["lstm"]
    assert all(float(c.bias.detach()[8:16].mean()) == pytest.approx(0.5) for c in rnn.cells)


@pytest.mark.parametrize("cell", ["lstm", "class"])
def test_a_bad_option_is_refused_before_any_cell_is_built(fresh_registry, monkeypatch, cell):
    cls = seqframe.get_cell("lstm")
    built = []
    monkeypatch.setattr(cls, "reset_parameters", lambda self: built.append(self), raising=False)
    with pytest.raises(CellOptionError) as error:
        seqframe.Recurrent(cls if cell == "class" else cell, 4, 8, num_layers=2, cell_options={"forget_bias": "x"})
    assert str(error.value) == "cell 'lstm': option forget_bias='x' must be float (default: 1.0)"
    with pytest.raises(CellOptionError, match="no option 'forgetbias'"):
        seqframe.Recurrent(cell if cell == "lstm" else cls, 4, 8, num_layers=2, cell_options={"forgetbias": 1.0})
    assert built == []


def test_block_list_skips_import(site, monkeypatch):
    make_distribution(
        site, "sf-test-blocked", "0.1", {"sf_blocked": "sf_test_blocked"}, {"sf_test_blocked": good_cell("blocked")}
    )
    monkeypatch.setenv("SEQFRAME_DISABLE_PLUGINS", "sf_blocked, gru")
    names = [c.name for c in seqframe.list_cells()]
    assert "blocked" not in names and "gru" not in names and "lstm" in names
    assert "sf_test_blocked" not in sys.modules


def test_allow_list_loads_only_named_plugins_and_keeps_builtins(site, monkeypatch):
    make_distribution(site, "sf-test-a", "0.1", {"sf_a": "sf_test_a"}, {"sf_test_a": good_cell("cell_a")})
    make_distribution(site / "b", "sf-test-b", "0.1", {"sf_b": "sf_test_b"}, {"sf_test_b": good_cell("cell_b")})
    monkeypatch.syspath_prepend(str(site / "b"))
    monkeypatch.setenv("SEQFRAME_PLUGINS", "sf_a")
    names = [c.name for c in seqframe.list_cells()]
    assert "cell_a" in names and "cell_b" not in names and {"rnn", "lstm", "gru"} <= set(names)
    assert "sf_test_b" not in sys.modules


def test_import_is_light_and_loads_no_plugin():
    code = (
        "import sys, seqframe\n"
        "heavy = [m for m in ('pytorch_lightning', 'lightning', 'hydra', 'torch', 'seqframe.core.cells.lstm')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_seqframe_cells_command_lists_builtins_without_lightning():
    code = (
        "import sys\nfrom seqframe.tools.cli import main\nmain(['cells'])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning', 'hydra')]\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:] if line.strip()}
    assert rows["lstm"][2:5] == ["seqframe", seqframe.__version__, "1600"]
    assert rows["gru"][4] == "1200" and rows["rnn"][4] == "400"
    assert rows["lstm"][-1] == "fused" and rows["gru"][-1] == "fused"


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("seqframe")
    result = subprocess.run([str(exe), "cells", "gr*", "--json"], capture_output=True, text=True, check=True)
    cells = json.loads(result.stdout)["cells"]
    assert [c["name"] for c in cells] == ["gru"]
