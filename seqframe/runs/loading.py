"""A trained run, loaded back: its checkpoint (weights-only), model and data config.

``seqframe-eval``, ``seqframe-predict`` and ``seqframe export`` all start
here. The model is rebuilt from the checkpoint's hyper-parameters (plain
values, including the ``data_state`` its data module fitted on the training
split); the data config is the run's own ``.hydra/config.yaml`` with the
user's ``data.key=value`` overrides on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from seqframe.errors import SeqframeError
from seqframe.harness.checkpoints import CheckpointError, load_checkpoint
from seqframe.harness.rundir import CONFIG_FILE as RUN_CONFIG
from seqframe.harness.rundir import RunDir


def run_checkpoint(path: Path, which: str = "best") -> Path:
    """A checkpoint file from a run dir (``which``: its best, else ``last.ckpt``; or ``last``) or the file itself."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path} is neither a run dir nor a checkpoint file; give the dir seqframe-train wrote")
    return RunDir(path).checkpoint(which)


def run_dir_of(checkpoint: Path) -> Optional[Path]:
    """The run dir a checkpoint was written into (``<run>/checkpoints/x.ckpt``), if it has a saved config."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if RunDir(folder).config_file.is_file():
            return folder
    return None


@dataclass
class TrainedRun:
    """What a trained run gives back: the checkpoint file, its hyper-parameters, its config."""

    checkpoint: Path
    checkpoint_data: Dict[str, Any]
    config: Any  # the run's composed OmegaConf config, or None for a bare checkpoint

    @property
    def hparams(self) -> Dict[str, Any]:
        return dict(self.checkpoint_data.get("hyper_parameters") or {})

    @property
    def data_state(self) -> Optional[Dict[str, Any]]:
        return self.hparams.get("data_state")

    def model(self, backend: Optional[str] = None, metrics: bool = True):
        """The trained :class:`~seqframe.harness.model.SequenceModel` in eval mode (optionally on another path,
        e.g. ``loop``: every path gives the same numbers). ``metrics=False`` for inference only (predict,
        export): the stages' metric objects are not built."""
        from seqframe.harness.model import SequenceModel

        hparams = self.hparams
        if "task" not in hparams or "cell" not in hparams:
            raise CheckpointError(
                f"{self.checkpoint} has no seqframe model hyper-parameters; was it written by seqframe-train?"
            )
        if backend is not None:
            hparams["cell"] = {**hparams["cell"], "backend": backend}
        model = SequenceModel(**hparams, metrics=metrics)
        model.load_state_dict(self.checkpoint_data["state_dict"])
        return model.eval()

    def data_module(self, overrides: Sequence[str] = ()):
        """The run's data module, with ``data.key=value`` overrides and the saved ``data_state``."""
        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        from seqframe.data.batching import without_global_batch_size

        if self.config is None:
            raise SeqframeError(
                f"{self.checkpoint} is not inside a run dir with {RUN_CONFIG}; give the run dir seqframe-train wrote"
            )
        bad = [o for o in overrides if not o.startswith("data.") or "=" not in o]
        if bad:
            raise SeqframeError(f"override {bad[0]!r} is not of the form data.key=value (e.g. data.path=new.csv)")
        config = OmegaConf.merge(self.config, OmegaConf.from_dotlist(list(overrides)))
        data = OmegaConf.to_container(without_global_batch_size(config.data)[0], resolve=True)
        if self.data_state:
            data["data_state"] = self.data_state
        return instantiate(data)


def load_run(path: str | Path, which: str = "best") -> TrainedRun:
    """Load a run dir or checkpoint (weights-only) with the run's config when there is one."""
    from omegaconf import OmegaConf

    checkpoint = run_checkpoint(Path(path).expanduser(), which)
    run_dir = run_dir_of(checkpoint)
    config = OmegaConf.load(RunDir(run_dir).config_file) if run_dir else None
    if config is not None and "paths" in config:
        config.paths.output_dir = str(run_dir)  # ${hydra:...} cannot be resolved outside Hydra
    return TrainedRun(checkpoint, load_checkpoint(checkpoint), config)
