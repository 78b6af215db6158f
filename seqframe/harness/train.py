"""One training run from a composed config: :func:`train`.

:func:`train` seeds, builds data, model, callbacks, loggers and Trainer from
the config, fits, tests, and writes ``summary.json`` into the run dir. It can
be called without Hydra's command line (tests, notebooks) as long as
``paths.output_dir`` is set; :mod:`seqframe.harness.app` is the command line.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import DictConfig, OmegaConf

from seqframe.harness.rundir import RunDir, RunSummary


def config_dir() -> Path:
    """The Hydra config tree: inside the installed package (wheel) or the checkout's ``conf/``."""
    import seqframe
    from seqframe.errors import SeqframeError

    package = Path(seqframe.__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise SeqframeError(f"seqframe's config tree was not found next to {package}; reinstall seqframe")


def _number(value: Any) -> Optional[float]:
    """A metric as a plain float (NaN and inf are kept: they are findings)."""
    return None if value is None else float(value)


def _resolve_monitor(cfg: DictConfig, spec) -> None:
    if cfg.get("monitor", "auto") == "auto":
        cfg.monitor = spec.monitor
    if cfg.get("monitor_mode", "auto") == "auto":
        cfg.monitor_mode = spec.mode


def _instantiate_all(group: Optional[DictConfig]) -> list:
    from hydra.utils import instantiate

    return [instantiate(item) for item in (group or {}).values() if item is not None]


def _callbacks(cfg: DictConfig) -> list:
    """The configured callbacks, without progress bars when the trainer disables them."""
    from pytorch_lightning.callbacks import ProgressBar

    callbacks = _instantiate_all(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def group_choice(group: str, default: str) -> str:
    """Which file of a config group Hydra composed (``data=adding`` -> ``adding``)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group) or default)
    return default


def wait_for_generated_kernels(deterministic: bool) -> None:
    """``trainer.deterministic=true``: cells on generated kernels wait for them before the first step,
    instead of starting on the step loop and switching when they are ready (a point that depends on
    the machine's load, and the two paths round differently)."""
    from seqframe.core.generated import MODE_ENV

    if deterministic:
        os.environ.setdefault(MODE_ENV, "wait")  # inherited by DDP ranks started after this


def train(cfg: DictConfig) -> Dict[str, Any]:
    """Run one training job described by ``cfg``; returns the summary it writes (as summary.json holds it)."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from seqframe.data.batching import per_process_batch_size, without_global_batch_size
    from seqframe.harness import execution
    from seqframe.harness.callbacks import EpochTimer, ending, pruning_callbacks
    from seqframe.harness.config_check import check_config
    from seqframe.harness.console import quiet_third_party
    from seqframe.harness.forecasting import forecast_callbacks
    from seqframe.harness.model import SequenceModel
    from seqframe.harness.numerics import set_flush_denormal
    from seqframe.harness.reliability import fit_resumably, reliability_callbacks
    from seqframe.harness.threads import AUTO, set_threads

    output_dir = Path(cfg.paths.output_dir)
    started = time.perf_counter()
    summary = RunSummary(
        status="running",
        cell=cfg.cell.name,
        cell_options=OmegaConf.to_container(cfg.cell, resolve=True),
        data=group_choice("data", cfg.data.get("_target_", "").rsplit(".", 1)[-1]),
        hardware=group_choice("hardware", "custom"),
        seed=cfg.seed,
        output_dir=str(output_dir),
    )
    trainer = None
    try:
        check_config(cfg, config_dir())
        summary.threads = set_threads(cfg.get("threads", AUTO))  # each process (rank, worker) its own
        summary.flush_denormal = set_flush_denormal(cfg.get("flush_denormal", True))  # after threads: per thread
        quiet_third_party(output_dir, resuming=cfg.get("ckpt_path") is not None)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        wait_for_generated_kernels(bool(cfg.trainer.get("deterministic")))
        data_config, global_batch = without_global_batch_size(cfg.data)
        datamodule = instantiate(data_config)
        spec = datamodule.spec
        _resolve_monitor(cfg, spec)
        model = SequenceModel(
            task=spec.as_dict(),
            cell=OmegaConf.to_container(cfg.cell, resolve=True),
            **OmegaConf.to_container(cfg.model, resolve=True),
            data_state=datamodule.data_state,
        )
        steps_per_execution = int(cfg.get("steps_per_execution") or 1)
        overrides = execution.configure(model, datamodule, steps_per_execution, cfg.trainer)
        timer = EpochTimer()
        trainer = instantiate(
            cfg.trainer,
            callbacks=[*_callbacks(cfg), timer, *reliability_callbacks(cfg, output_dir)]
            + forecast_callbacks(datamodule, output_dir)
            + pruning_callbacks(cfg.monitor),
            logger=_instantiate_all(cfg.get("logger")) or False,
            default_root_dir=str(output_dir),
            **overrides,
        )
        if global_batch is not None:
            processes = trainer.num_devices * trainer.num_nodes
            datamodule.batch_size = per_process_batch_size(datamodule.batch_size, global_batch, processes)
        summary.update(
            task=spec.task,
            baseline=spec.baseline,
            target=spec.target,
            monitor=cfg.monitor,
            monitor_mode=cfg.monitor_mode,
            parameters=sum(p.numel() for p in model.parameters()),
            paths=model.rnn.paths(),
            gates=type(model.rnn.cells[0]).gates,
            has_cell_state=type(model.rnn.cells[0]).has_cell_state,
            data_report=datamodule.report,
        )
        if not fit_resumably(trainer, model, datamodule, cfg, summary):  # SIGTERM: checkpoint saved, clean stop
            return summary.to_dict()
        checkpoint = trainer.checkpoint_callback
        best_path = getattr(checkpoint, "best_model_path", "") or None
        summary.update(
            best_val=_number(getattr(checkpoint, "best_model_score", None)),
            final_val=_number(trainer.callback_metrics.get(cfg.monitor)),
            epochs=trainer.current_epoch,
            world_size=trainer.world_size,
            batch_size={"per_process": datamodule.batch_size, "global": datamodule.batch_size * trainer.world_size},
            steps=trainer.global_step,
            steps_per_execution=steps_per_execution,
            time_per_epoch=sum(timer.durations) / len(timer.durations) if timer.durations else None,
            epoch_times=timer.durations,
            best_checkpoint=best_path,
        )
        if cfg.get("test", True):
            best = "best" if best_path else None
            results = trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
            summary.test = {k: _number(v) for k, v in (results[0] if results else {}).items()}
        summary.status = ending(trainer)  # finished, or pruned by an Optuna search
    except BaseException as exc:
        summary.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        raise
    finally:
        summary.wall_time = time.perf_counter() - started
        if trainer is None or trainer.is_global_zero:
            RunDir(output_dir).write_summary(summary)
    return summary.to_dict()
