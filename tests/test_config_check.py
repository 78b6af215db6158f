"""Bad configs are refused before training, each with a message naming the key and what is valid."""

import inspect
from dataclasses import fields
from typing import Optional, Union

import pytest
from hydra import compose, initialize_config_dir
from runs import attempt, tiny

from seqframe.core.options import type_mismatch
from seqframe.errors import SeqframeError
from seqframe.harness.cell_configs import register_cell_configs
from seqframe.harness.command_line import check_command_line
from seqframe.harness.config_check import ConfigError, check_config
from seqframe.harness.model import SequenceModel
from seqframe.harness.schema import ModelConfig
from seqframe.harness.train import config_dir

CONF = config_dir()


def composed(overrides):
    register_cell_configs(CONF)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def refused(overrides):
    """The message check_config gives for a config composed with ``overrides`` (``+key`` adds a key)."""
    cfg = composed(overrides)
    cfg.paths.output_dir = "unused"  # the hydra resolver is not there in compose()
    with pytest.raises(SeqframeError) as caught:
        check_config(cfg, CONF)
    return str(caught.value)


# (overrides, fragments the one-line message must contain)
BAD_VALUES = [
    # misspelled keys, one per group (added with + so that Hydra composes them)
    (["+trainer.max_epoch=3"], ["trainer.max_epoch", "did you mean max_epochs?", "gradient_clip_val"]),
    (["+data.seq_length=5"], ["data.seq_length", "did you mean seq_len?", "batch_size"]),
    (["data=copy", "+data.seq_len=5"], ["data.seq_len", "delay"]),
    (["+model.hiden_size=8"], ["model.hiden_size", "did you mean hidden_size?", "num_layers"]),
    (["+model.optimizer.learning_rate=0.1"], ["model.optimizer.learning_rate", "torch.optim.Adam", "lr"]),
    (["+callbacks.model_checkpoint.save_lst=true"], ["callbacks.model_checkpoint.save_lst", "save_last"]),
    (
        ["+callbacks.step_checkpoint.every_n_steps=3"],
        ["every_n_steps", "did you mean every_n_train_steps?", "dirpath"],
    ),
    (["+logger.csv.save_directory=x"], ["logger.csv.save_directory", "save_dir"]),
    (["+sed=3"], ["sed is not a setting of the top level", "did you mean seed?"]),
    (["cell=lstm", "+cell.forget_bais=1.0"], ["no option 'forget_bais'", "forget_bias=1.0"]),
    # wrong types
    (["model.hidden_size=abc"], ["model.hidden_size='abc' must be int"]),
    (["model.hidden_size=1.5"], ["model.hidden_size=1.5 must be int"]),
    (["model.bidirectional=3"], ["model.bidirectional=3 must be bool"]),
    (["model.dropout=high"], ["model.dropout='high' must be float"]),
    (["trainer.max_epochs=many"], ["trainer.max_epochs='many' must be int or null"]),
    (["trainer.gradient_clip_val=big"], ["trainer.gradient_clip_val='big' must be", "float"]),
    (["data.seq_len=ten"], ["data.seq_len='ten' must be int"]),
    (["data.shuffle=maybe"], ["data.shuffle='maybe' must be bool"]),
    (["seed=abc"], ["seed='abc' must be int"]),
    (["test=3"], ["test=3 must be bool"]),
    (["cell=lstm", "cell.forget_bias=strong"], ["cell 'lstm': option forget_bias='strong' must be float"]),
    # values out of range or not among the choices
    (["model.hidden_size=-4"], ["model.hidden_size=-4 is out of range", "at least 1"]),
    (["model.num_layers=0"], ["model.num_layers=0 is out of range"]),
    (["model.embed_dim=0"], ["model.embed_dim=0 is out of range"]),
    (["model.dropout=1.5"], ["model.dropout=1.5 is out of range", "0.0", "1.0"]),
    (["model.dropout=-0.1"], ["model.dropout=-0.1 is out of range"]),
    (["model.encoder=conv"], ["model.encoder='conv' is not valid", "auto, none, linear, embedding"]),
    (["monitor_mode=biggest"], ["monitor_mode='biggest' is not valid", "auto, min, max"]),
    (["on_nonfinite=ignore"], ["on_nonfinite='ignore' is not valid", "stop, skip"]),
    (["seed=-1"], ["seed=-1 is out of range"]),
    (
        ["model.optimizer._target_=torch.optim.Adamm"],
        ["model.optimizer._target_='torch.optim.Adamm' cannot be imported"],
    ),
]


@pytest.mark.parametrize("overrides,fragments", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_bad_config_is_refused_with_its_message(overrides, fragments):
    message = refused(overrides)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_the_default_config_and_every_data_and_hardware_choice_pass():
    for choice in (
        [],
        ["data=copy"],
        ["data=text"],
        ["data=seed_example"],
        ["hardware=ddp_cpu"],
        ["cell=rnn"],
        ["logger=many"],
        ["callbacks=early_stopping"],
        ["experiment=seed_keras"],
        ["trainer.max_steps=5", "trainer.detect_anomaly=true"],
        ["model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,step_size:2,interval:epoch}"],
    ):
        cfg = composed(choice)
        cfg.paths.output_dir = "unused"
        check_config(cfg, CONF)


def test_model_schema_matches_the_model_constructor():
    """The one hand-written schema cannot drift from what SequenceModel takes."""
    taken = list(inspect.signature(SequenceModel.__init__).parameters)[3:]  # after self, task, cell
    taken.remove("data_state")  # filled in from the data module by train(), not a config key
    taken.remove("metrics")  # False only for inference (predict, export), not a config key
    assert [f.name for f in fields(ModelConfig)] == taken


# Command-line overrides Hydra itself would refuse (the key is not in the composed config)
BAD_OVERRIDES = [
    (["trainer.max_epoch=3"], ["trainer.max_epoch is not a setting of trainer", "did you mean max_epochs?"]),
    (["trainer.min_epochs=3"], ["trainer.min_epochs is valid but not in the config files", "+trainer.min_epochs"]),
    (["data.seq_lenn=3"], ["data.seq_lenn", "did you mean seq_len?"]),
    (["model.hidden=3"], ["model.hidden", "hidden_size"]),
    (["-m", "cell=rnn,gru", "model.dropot=0.1,0.2"], ["model.dropot", "did you mean dropout?"]),
    (["cell=nosuchcell"], ["nosuchcell", "gru", "lstm"]),
    (["data=nosuchdata"], ["nosuchdata", "adding", "copy"]),
    (["data=copi"], ["data=copi is not a choice of data; did you mean copy? Choices: adding, copy"]),
    (["cell.hidden_size=8"], ["cell.hidden_size is not an option of cell 'gru'", "model.hidden_size=8"]),
    (["-m", "cell=rnn,lstm", "cell.nonlinearty=relu"], ["none of the swept cells; did you mean nonlinearity?"]),
    (["cell=layernorm_lstm", "cell.eps=abc"], ["cell 'layernorm_lstm': option eps='abc' must be float"]),
    (["cell.backend=fast"], ["cell.backend='fast' is not valid; choose one of auto, loop, compile"]),
    (["+cell.foo=1"], ["cell 'gru' has no option 'foo'", "reset_after=False", "backend='auto'"]),
    (["model.hidden_size=x=("], ["model.hidden_size=x=(", "override_grammar"]),
]


@pytest.mark.parametrize("arguments,fragments", BAD_OVERRIDES, ids=[" ".join(a) for a, _ in BAD_OVERRIDES])
def test_bad_command_line_override_is_refused_before_hydra(arguments, fragments):
    register_cell_configs(CONF)
    with pytest.raises(SeqframeError) as caught:
        check_command_line(arguments, CONF)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_good_overrides_pass_including_sweeps():
    register_cell_configs(CONF)
    argv = ["-m", "cell=rnn,gru", "model.hidden_size=8,16", "+trainer.max_steps=2", "hydra.run.dir=x"]
    check_command_line(argv, CONF)


def test_a_sweep_leaves_its_values_to_its_jobs():
    """A bad value in a sweep fails its own job (recorded in the sweep), not the whole command."""
    register_cell_configs(CONF)
    check_command_line(["-m", "model.hidden_size=-1,8"], CONF)
    with pytest.raises(ConfigError, match="model.hidden_size=-1 is out of range"):
        check_command_line(["model.hidden_size=-1"], CONF)


@pytest.mark.parametrize(
    "value,hint,problem",
    [
        (1, float, None),
        (1.5, int, "x=1.5 must be int"),
        (True, int, "x=True must be int"),
        (True, bool, None),
        (1, bool, "x=1 must be bool"),
        (None, Optional[int], None),
        (None, int, "x must be set (got null)"),
        ("a", Optional[Union[int, float]], "x='a' must be float or null"),
        ([1], list, None),  # not a plain type: left to the constructor
    ],
)
def test_one_value_type_rule(value, hint, problem):
    assert type_mismatch("x", value, hint) == problem


def test_command_line_refuses_before_training(tmp_path):
    """One real process: a bad value exits 2 with the message, and leaves nothing behind: no run dir."""
    result = attempt([*tiny(), "model.dropout=1.5"], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "seqframe-train: error: model.dropout=1.5 is out of range: it must be between 0.0 and 1.0" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "a refused config must leave no outputs/ run dir"
