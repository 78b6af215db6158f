"""Bad configs are refused before training, each with a message naming the key and what is valid."""

import inspect
from dataclasses import fields

import pytest
from hydra import compose, initialize_config_dir
from runs import attempt, tiny

from seqframe.errors import SeqframeError
from seqframe.harness.cell_configs import register_cell_configs
from seqframe.harness.config_check import ConfigError, check_config, check_overrides
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
        ["+trainer.max_steps=5", "trainer.detect_anomaly=true"],
        ["model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,step_size:2,interval:epoch}"],
    ):
        cfg = composed(choice)
        cfg.paths.output_dir = "unused"
        check_config(cfg, CONF)


def test_model_schema_matches_the_model_constructor():
    """The one hand-written schema cannot drift from what SequenceModel takes."""
    taken = list(inspect.signature(SequenceModel.__init__).parameters)[3:]  # after self, task, cell
    taken.remove("data_state")  # filled in from the data module by train(), not a config key
    assert [f.name for f in fields(ModelConfig)] == taken


# Command-line overrides Hydra itself would refuse (the key is not in the composed config)
BAD_OVERRIDES = [
    (["trainer.max_epoch=3"], ["trainer.max_epoch is not a setting of trainer", "did you mean max_epochs?"]),
    (["trainer.max_steps=3"], ["trainer.max_steps is valid but not in the config files", "+trainer.max_steps"]),
    (["data.seq_lenn=3"], ["data.seq_lenn", "did you mean seq_len?"]),
    (["model.hidden=3"], ["model.hidden", "hidden_size"]),
    (["-m", "cell=rnn,gru", "model.dropot=0.1,0.2"], ["model.dropot", "did you mean dropout?"]),
    (["cell=nosuchcell"], ["nosuchcell", "gru", "lstm"]),
    (["data=nosuchdata"], ["nosuchdata", "adding", "copy"]),
]


@pytest.mark.parametrize("arguments,fragments", BAD_OVERRIDES, ids=[" ".join(a) for a, _ in BAD_OVERRIDES])
def test_bad_command_line_override_is_refused_before_hydra(arguments, fragments):
    register_cell_configs(CONF)
    with pytest.raises(ConfigError) as caught:
        check_overrides(arguments, CONF)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_good_overrides_pass_including_sweeps():
    register_cell_configs(CONF)
    check_overrides(["-m", "cell=rnn,gru", "model.hidden_size=8,16", "+trainer.max_steps=2", "hydra.run.dir=x"], CONF)


def test_command_line_refuses_before_training(tmp_path):
    """One real process: a bad value exits 2 with the message, and no checkpoint is ever written."""
    result = attempt([*tiny(), "model.dropout=1.5", "hydra.run.dir=run"], tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "seqframe-train: error: model.dropout=1.5 is out of range: it must be between 0.0 and 1.0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("metrics.csv"))
