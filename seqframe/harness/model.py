"""``SequenceModel``: encoder -> Recurrent -> head, wired from the data's TaskSpec.

Everything the model needs arrives as plain values (numbers, strings,
dicts), so its hyper-parameters are saved in checkpoints without pickled
objects and a checkpoint rebuilds the model on its own.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqframe.core.cell import State
from seqframe.core.options import RUNNER_KEYS
from seqframe.core.recurrent import Recurrent
from seqframe.core.state import map_state, stack_states
from seqframe.data.base import IGNORE_INDEX, PER_STEP_TASKS, REGRESSION_TASKS, TaskSpec
from seqframe.data.forecast_scores import pinball
from seqframe.data.series import to_units
from seqframe.data.streams import StreamBatch
from seqframe.harness.execution import GroupedSteps, as_batches
from seqframe.harness.metrics import ForecastMetrics, TaskMetrics
from seqframe.harness.schema import ENCODERS

STAGES = ("train", "val", "test")
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "lr": 3e-3}


def split_cell_config(cell: Dict[str, Any]) -> tuple[str, str, Dict[str, Any]]:
    """``{name, backend, **options}`` -> ``(name, backend, options)``."""
    options = {k: v for k, v in cell.items() if k not in RUNNER_KEYS}
    return cell["name"], cell.get("backend", "auto"), options


class SequenceModel(pl.LightningModule):
    """A recurrent model for one task.

    Args:
        task: a :class:`TaskSpec` as a dict (the data module's ``spec``).
        cell: ``{"name": ..., "backend": ..., **cell options}``.
        hidden_size, num_layers, bidirectional, dropout: the Recurrent stack.
        encoder: ``auto`` (an embedding for token inputs, nothing for real
            features, as in the spec's Keras model), ``linear`` or ``none``.
        embed_dim: size of the embedding / linear encoder.
        optimizer: ``{"_target_": "torch.optim.Adam", "lr": ...}`` (any optimizer class).
        scheduler: ``None`` or ``{"_target_": ..., **kwargs}``, plus optional
            ``interval`` (``epoch``/``step``) and ``monitor`` (for ReduceLROnPlateau).
        data_state: what the data module fitted on the training split (normalisation,
            classes, vocabulary) as plain values, kept in checkpoints so that
            evaluation, prediction and export read new data the same way.
        time_checkpoint: keep every ``K``-th state of each layer and recompute the rest in the
            backward pass (bounded memory on long sequences; see :class:`Recurrent`); None keeps all.
        quantiles: forecasting (``data=series``) only: the quantile levels to forecast, with 0.5 among them
            (the point forecast), trained with the pinball loss; None forecasts one value, trained with MSE.
        metrics: build the stages' metrics; ``False`` for inference only (predict, export), which
            never updates them. Not a hyper-parameter: checkpoints do not record it.
    """

    def __init__(
        self,
        task: Dict[str, Any],
        cell: Dict[str, Any],
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        encoder: str = "auto",
        embed_dim: int = 32,
        optimizer: Optional[Dict[str, Any]] = None,
        scheduler: Optional[Dict[str, Any]] = None,
        data_state: Optional[Dict[str, Any]] = None,
        time_checkpoint: Optional[int] = None,
        quantiles: Optional[Sequence[float]] = None,
        metrics: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["metrics"])
        self.spec = TaskSpec(**task)
        if self.spec.stateful and bidirectional:
            raise ValueError(
                "data.stateful=true carries the state forward from one batch to the next, which a bidirectional "
                "model cannot do (its reverse direction would need the future): set model.bidirectional=false, "
                "or data.stateful=false"
            )
        # forecasting (data=series): its horizon, targets and transform; outputs and metrics in the data's units
        self.forecast_spec: Optional[Dict[str, Any]] = (data_state or {}).get("forecast")
        self.quantiles = self._check_quantiles(quantiles)
        if encoder not in ENCODERS:
            raise ValueError(f"model.encoder={encoder!r} is not valid; choose one of {', '.join(ENCODERS)}")
        self.encoder, rnn_input = self._build_encoder(encoder, int(embed_dim))
        name, backend, options = split_cell_config(dict(cell))
        self.rnn = Recurrent(
            name, rnn_input, hidden_size, num_layers, bidirectional, dropout, backend, options, time_checkpoint
        )
        self.binary = self.spec.task == "classify" and self.spec.num_outputs == 2
        outputs = 1 if self.binary else self.spec.num_outputs * max(1, len(self.quantiles))
        self.head = nn.Linear(self.rnn.output_size, outputs)
        if metrics:
            self.train_metrics, self.val_metrics, self.test_metrics = (self._build_metrics(s) for s in STAGES)
        # several optimizer steps per Lightning step: set by seqframe.harness.execution.configure
        self.execution: Optional[GroupedSteps] = None
        # data.stateful: each stage's final state of its previous batch (detached), the next batch's start
        self.carried: Dict[str, State] = {}

    def _build_encoder(self, encoder: str, embed_dim: int) -> tuple[nn.Module, int]:
        spec = self.spec
        if spec.vocab_size is not None:
            if encoder in ("none", "linear"):
                raise ValueError(f"model.encoder={encoder} cannot read token inputs; use auto or embedding")
            return nn.Embedding(spec.vocab_size, embed_dim), embed_dim
        if encoder == "embedding":
            raise ValueError("model.encoder=embedding needs token inputs; this task has real-valued features")
        if encoder == "linear":
            return nn.Linear(spec.input_size, embed_dim), embed_dim
        return nn.Identity(), spec.input_size

    def _check_quantiles(self, quantiles: Optional[Sequence[float]]) -> tuple:
        if not quantiles:
            return ()
        levels = tuple(float(q) for q in quantiles)
        if self.forecast_spec is None:
            raise ValueError("model.quantiles needs forecasting data (data=series); set model.quantiles=null")
        if any(not 0 < q < 1 for q in levels) or list(levels) != sorted(set(levels)) or 0.5 not in levels:
            raise ValueError(
                f"model.quantiles={list(levels)}: give increasing levels between 0 and 1 that include 0.5 "
                f"(the point forecast), e.g. model.quantiles=[0.1,0.5,0.9]"
            )
        return levels

    def _build_metrics(self, stage: str) -> TaskMetrics | ForecastMetrics:
        """The task's metrics plus the mean loss; updated on-device each step, synced and logged per epoch."""
        if self.forecast_spec is not None:
            return ForecastMetrics(self.forecast_spec["horizon"], self.quantiles, per_step=stage == "test")
        if self.spec.task in REGRESSION_TASKS:
            return TaskMetrics("regression")
        return TaskMetrics("binary" if self.binary else "multiclass", ignore_index=IGNORE_INDEX)

    def forward(self, x: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """Logits / predictions: ``[B, T, C]`` for per-step tasks, else ``[B, C]``."""
        out, _ = self.rnn(self.encoder(x), lengths=lengths)
        return self._head(out, lengths)

    def forward_with_state(self, x: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """``forward`` from a given state (None: the cells' initial state), returning the final state too:
        what stateful training, generation and the streaming export run. Chunks of a sequence run one
        after the other this way give the outputs of the whole sequence run at once."""
        out, final = self.rnn(self.encoder(x), state)
        return self._head(out, None), final

    def _head(self, out: Tensor, lengths: Optional[Tensor]) -> Tensor:
        if self.spec.task in PER_STEP_TASKS:
            return self.head(out)
        return self.head(self._summarise(out, lengths))

    def initial_state(self, batch: int, device: Optional[torch.device] = None, dtype=None) -> State:
        """The cells' initial states stacked ``[L*D, B, S]`` (the layout ``rnn`` takes and returns)."""
        dtype = dtype or self.head.weight.dtype
        return stack_states([cell.initial_state(batch, device=device, dtype=dtype) for cell in self.rnn.cells])

    def _stream_start(self, stage: str, reset: Tensor) -> Optional[State]:
        """The state a stateful batch starts from: the stage's carried one, with the rows where a stream
        starts afresh (``reset``) back at the initial state; None (the initial state) when all do."""
        carried = self.carried.get(stage)
        if carried is None or bool(reset.all()):
            return None
        if not bool(reset.any()):
            return carried
        like = carried if isinstance(carried, Tensor) else carried[0]
        initial = self.initial_state(len(reset), device=like.device, dtype=like.dtype)
        rows = reset.to(like.device).view(1, -1, 1)
        return map_state(lambda start, kept: torch.where(rows, start, kept), initial, carried)

    def _summarise(self, out: Tensor, lengths: Optional[Tensor]) -> Tensor:
        """One vector per sequence: the forward direction at its last valid step,
        the reverse direction at step 0 (where it has read the whole sequence)."""
        h = self.rnn.hidden_size
        if lengths is None:
            last = out[:, -1, :h]
        else:
            last = out[torch.arange(out.shape[0], device=out.device), lengths.to(out.device) - 1, :h]
        return last if self.rnn.num_directions == 1 else torch.cat([last, out[:, 0, h:]], dim=1)

    def _loss(self, output: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(loss, predictions, targets)`` in the shapes the metrics take."""
        if self.spec.task == "per_step_regress":  # padded steps hold NaN targets: left out
            valid = ~torch.isnan(y).any(-1)
            output, y = output[valid], y[valid].to(output.dtype)
            # a batch of padding only (a stateful stream that ran out) contributes a zero, not NaN
            loss = F.mse_loss(output, y) if output.numel() else output.sum()
            return loss, output, y
        if self.spec.task == "regress":
            y = y.view_as(output).to(output.dtype)
            return F.mse_loss(output, y), output, y
        if self.binary:
            logits = output.squeeze(-1)
            return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype)), logits, y.long()
        logits = output.reshape(-1, output.shape[-1])
        targets = y.reshape(-1).long()
        # the mean over the labelled steps, bit for bit, and a zero (not NaN) when none is labelled
        counted = (targets != IGNORE_INDEX).sum().clamp(min=1)
        loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum") / counted
        return loss, logits, targets

    def forecast_outputs(self, x: Tensor) -> Tensor:
        """Forecasting: the normalised outputs ``[B, H, K, Q]`` (Q = 1 without quantiles)."""
        horizon = self.forecast_spec["horizon"]
        return self(x).view(x.shape[0], horizon, -1, max(1, len(self.quantiles)))

    def to_units(self, z: Tensor, info: Tensor) -> Tensor:
        """Normalised forecasts back in the data's units, quantiles sorted (a monotone rearrangement)."""
        values = to_units(z, info, self.forecast_spec["log"])
        return values.sort(dim=-1).values if values.dim() == 4 else values

    def _forecast_loss(self, batch, stage: str) -> Tensor:
        """Forecasting: MSE (or the pinball loss over the quantiles) on normalised values; metrics in units."""
        x, y, info = batch
        z = self.forecast_outputs(x)
        y = y.to(z.dtype)
        loss = pinball(z, y, self.quantiles) if self.quantiles else F.mse_loss(z[..., 0], y)
        with torch.no_grad():
            metrics = getattr(self, f"{stage}_metrics")
            metrics.update(loss.detach(), len(x), self.to_units(z.detach(), info), self.to_units(y, info), info[:, 2])
        return loss

    def batch_loss(self, batch, stage: str, log_step: bool = True) -> Tensor:
        """One batch's loss, with the ``stage``'s metrics updated (and, in training, ``train/loss_step``
        logged unless ``log_step`` is False: a group of batches logs once, at its end)."""
        if self.forecast_spec is not None:
            loss = self._forecast_loss(batch, stage)
            if log_step and stage == "train":
                self.log_step_loss(loss)
            return loss
        if isinstance(batch, StreamBatch):  # data.stateful: truncated BPTT, the state carried (detached)
            output, final = self.forward_with_state(batch.x, self._stream_start(stage, batch.reset))
            self.carried[stage] = map_state(torch.Tensor.detach, final)
            return self._score(output, batch.y, stage, log_step)
        x, y, *rest = batch
        lengths = rest[0] if rest else None
        if lengths is not None and self.spec.task in PER_STEP_TASKS:
            padded = torch.arange(y.shape[1], device=y.device) >= lengths.to(y.device)[:, None]
            if self.spec.task == "per_step":
                y = y.masked_fill(padded, IGNORE_INDEX)
            else:
                y = y.masked_fill(padded.unsqueeze(-1), float("nan"))
        return self._score(self(x, lengths), y, stage, log_step)

    def _score(self, output: Tensor, y: Tensor, stage: str, log_step: bool) -> Tensor:
        """The loss of ``output`` against ``y``, with the stage's metrics updated and the step loss logged."""
        loss, predictions, targets = self._loss(output, y)
        weight = (targets != IGNORE_INDEX).sum() if self.spec.task == "per_step" else len(targets)
        getattr(self, f"{stage}_metrics").update(loss.detach(), weight, predictions.detach(), targets)
        if log_step and stage == "train":
            self.log_step_loss(loss)
        return loss

    def log_step_loss(self, loss: Tensor) -> None:
        """``train/loss_step`` on steps that are multiples of ``trainer.log_every_n_steps`` (when Lightning writes)."""
        if self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=1)

    def _log_epoch(self, stage: str) -> None:
        """Compute (synced across processes), log once and reset the stage's metrics."""
        metrics = getattr(self, f"{stage}_metrics")
        values = {f"{stage}/{name}": value for name, value in metrics.compute().items()}
        if self.spec.task == "per_step":
            values[f"{stage}/bpc"] = values[f"{stage}/loss"] / math.log(2)
        self.log_dict(values, prog_bar=stage != "train")
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")
        if self.execution is not None:
            self.execution.train_epoch_end(self)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def training_step(self, batch, batch_idx: int) -> Optional[Tensor]:
        if self.execution is None:
            return self.batch_loss(batch, "train")
        self.execution.training_step(self, batch)
        return None

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.execution is not None:
            self.execution.before_optimizer_step(self, optimizer)

    def validation_step(self, batch, batch_idx: int) -> None:
        for one in as_batches(batch):
            self.batch_loss(one, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        for one in as_batches(batch):
            self.batch_loss(one, "test")

    def predict_step(self, batch, batch_idx: int) -> Tensor:
        x, *rest = batch if isinstance(batch, (list, tuple)) else (batch,)
        return self(x, rest[1] if len(rest) > 1 else None)

    def configure_optimizers(self):
        from hydra.utils import instantiate

        optimizer = instantiate(dict(self.hparams.optimizer or DEFAULT_OPTIMIZER), params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler_cfg = dict(self.hparams.scheduler)
        extra = {k: scheduler_cfg.pop(k) for k in ("interval", "monitor") if k in scheduler_cfg}
        scheduler = instantiate(scheduler_cfg, optimizer=optimizer)
        if self.execution is not None:  # manual optimization: Lightning steps no scheduler
            return self.execution.optimizer_config(optimizer, scheduler, **extra)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **extra}}
