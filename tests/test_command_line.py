"""``seqframe-train``'s command line: parsed and composed once before Hydra, refused with one line
that says what to do, and a refused config leaves no run directory behind."""

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from runs import attempt, run, summary, tiny

from seqframe.errors import SeqframeError
from seqframe.harness import config_check
from seqframe.harness.cell_configs import register_cell_configs
from seqframe.harness.command_line import check_command_line, is_override
from seqframe.harness.train import config_dir

CONF = config_dir()


@pytest.fixture
def counted(monkeypatch):
    """How often the command line is parsed and a config composed."""
    calls = {"parse": 0, "compose": 0}
    parse, compose_ = OverridesParser.parse_overrides, hydra.compose
    composing = []

    def parse_overrides(self, *args, **kwargs):
        calls["parse"] += not composing  # compose() parses its overrides itself: that is its own work
        return parse(self, *args, **kwargs)

    def counting_compose(*args, **kwargs):
        calls["compose"] += 1
        composing.append(True)
        try:
            return compose_(*args, **kwargs)
        finally:
            composing.pop()

    monkeypatch.setattr(OverridesParser, "parse_overrides", parse_overrides)
    monkeypatch.setattr(hydra, "compose", counting_compose)
    register_cell_configs(CONF)
    return calls


@pytest.mark.parametrize(
    "argv",
    [
        ["cell=lstm", "cell.forget_bias=0.5", "model.hidden_size=8", "+trainer.max_steps=3"],
        ["-m", "cell=lstm,gru", "cell.init=torch", "model.hidden_size=8,16"],
        ["cell.reset_after=true"],  # the default cell, known only once composed
    ],
)
def test_parsed_once_and_composed_once(counted, argv):
    check_command_line(argv, CONF)
    assert counted == {"parse": 1, "compose": 1}


def check_refused(argv):
    register_cell_configs(CONF)
    with pytest.raises(SeqframeError) as caught:
        check_command_line(argv, CONF)
    message = str(caught.value)
    assert "\n" not in message and "search path" not in message
    return message


def test_a_misspelled_cell_gets_did_you_mean_and_the_list():
    message = check_refused(["cell=lstmm"])
    assert "unknown cell 'lstmm'. Did you mean 'lstm'?" in message
    assert "Available cells: gru, " in message and "rnn" in message


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["cell.hidden_size=8"], "cell.hidden_size is not an option of cell 'gru': it is a model setting"),
        (["cell.hidden_size=8"], "model.hidden_size=8"),
        (["cell=lstm", "cell.num_layers=2"], "model.num_layers=2"),
        (["-m", "cell=rnn,lstm", "cell.dropout=0.1"], "model.dropout=0.1"),
        (["cell.input_size=3"], "the input size comes from the data"),
    ],
)
def test_model_settings_given_under_cell_name_their_model_key(argv, fragment):
    assert fragment in check_refused(argv)


COMMON_TRAINER_KEYS = [
    "trainer.val_check_interval=0.5",
    "trainer.max_time=00:00:10:00",
    "trainer.accumulate_grad_batches=2",
    "trainer.max_steps=3",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
    "trainer.gradient_clip_val=0.5",
    "trainer.gradient_clip_algorithm=value",
]


def composed(argv):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[a for a in argv if is_override(a)])


def test_common_trainer_keys_need_no_plus():
    register_cell_configs(CONF)
    trainer = composed(check_command_line(COMMON_TRAINER_KEYS, CONF)).trainer
    assert (trainer.val_check_interval, trainer.max_time, trainer.accumulate_grad_batches) == (0.5, "00:00:10:00", 2)
    assert (trainer.max_steps, trainer.limit_train_batches, trainer.gradient_clip_algorithm) == (3, 4, "value")


def test_the_trainer_defaults_are_lightnings():
    """Listing a key in trainer/default.yaml must not change what the Trainer does."""
    import inspect

    import pytorch_lightning as pl

    defaults = inspect.signature(pl.Trainer.__init__).parameters
    trainer = composed([]).trainer
    for key in ("max_steps", "max_time", "val_check_interval", "accumulate_grad_batches", "gradient_clip_algorithm"):
        assert trainer[key] == defaults[key].default, key


@pytest.mark.parametrize("argv", [["+trainer.max_steps=3"], ["+trainer.max_steps=3", "+trainer.min_epochs=1"]])
def test_a_leading_plus_keeps_working_for_keys_the_files_now_have(argv):
    register_cell_configs(CONF)
    given = check_command_line(argv, CONF)
    assert given[0] == "++trainer.max_steps=3"  # Hydra's add-or-override
    cfg = composed(given)
    assert cfg.trainer.max_steps == 3 and cfg.trainer.get("min_epochs", 1) == 1


def test_config_groups_and_flags_are_given_to_hydra_unchanged():
    register_cell_configs(CONF)
    argv = ["-m", "experiment=seed_keras", "+hydra.job.env_set.SEQFRAME_X=1", "hydra.run.dir=x", "--cfg", "job"]
    assert check_command_line(argv, CONF) == argv


def test_what_the_command_line_checked_is_not_checked_again_in_train(monkeypatch):
    """train() calls check_config too (notebooks, tests); after the command line's check, Hydra's
    composition of the same command line is not checked twice, and any other config is."""
    register_cell_configs(CONF)
    given = check_command_line(["cell=lstm", "model.hidden_size=8", "+trainer.max_steps=3"], CONF)
    checked = []
    monkeypatch.setattr(config_check, "check_schema", lambda *args, **kwargs: checked.append(args))
    config_check.check_config(composed(given), CONF)
    assert checked == []
    other = composed(["cell=lstm", "model.hidden_size=9"])
    other.paths.output_dir = "unused"  # no Hydra run here to resolve it
    config_check.check_config(other, CONF)
    assert len(checked) == 1


# ---------------------------------------------------------------- real processes


@pytest.mark.parametrize(
    "args,message",
    [
        (["cell=lstmm"], "Did you mean 'lstm'?"),
        (["cell.name=lstn"], "Did you mean 'lstm'?"),
        (["cell=lstm", "cell.forget_bias=x"], "cell 'lstm': option forget_bias='x' must be float (default: 1.0)"),
        (["trainer.max_epoch=3"], "did you mean max_epochs?"),
    ],
)
def test_a_refused_command_line_leaves_no_run_dir(tmp_path, args, message):
    result = attempt(args, tmp_path)
    assert result.returncode == 2 and "seqframe-train: error: " in result.stderr, result.stderr[-3000:]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "no outputs/<date>/<time> for a config refused before training"


def test_trainer_keys_with_and_without_plus_train(tmp_path):
    args = [*tiny(epochs=3), "data.batch_size=32", "+trainer.max_steps=5", "trainer.val_check_interval=2"]
    run([*args, "trainer.max_time=00:00:10:00", "hydra.run.dir=run"], tmp_path)
    done = summary(tmp_path / "run")
    assert done["status"] == "finished" and done["steps"] == 5
