"""Which checkpoint ``ckpt_path`` means, checked before training starts: readable weights-only, and
written for the same model and task. A damaged ``last.ckpt`` (cut short by a full disk, a copy or a
node lost mid-write) is skipped for the newest checkpoint of the run that loads, with one warning."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from seqframe.harness.checkpoints import CheckpointError, DamagedCheckpointError, load_checkpoint
from seqframe.harness.rundir import LAST, RunDir

log = logging.getLogger(__name__)  # a warning is one log line (the warnings module adds the source line)

# the model settings the weights' shapes follow
STRUCTURE_KEYS = ("hidden_size", "num_layers", "bidirectional", "encoder", "embed_dim")


def check_same_model(checkpoint: Dict[str, Any], path: Path, hparams: Dict[str, Any]) -> None:
    """Refuse to resume a checkpoint of another task, cell or model shape: the weights may fit by chance
    (same sizes) and training would go on silently on the wrong problem. Backend and optimizer may change."""
    saved = checkpoint.get("hyper_parameters") or {}

    def cell(config: Dict[str, Any]) -> Dict[str, Any]:
        return {k: v for k, v in (config or {}).items() if k != "backend"}

    differences = [
        f"{key}: {saved[key]!r} there, {hparams[key]!r} here"
        for key in ("task", *STRUCTURE_KEYS)
        if key in saved and key in hparams and saved[key] != hparams[key]
    ]
    if "cell" in saved and cell(saved["cell"]) != cell(hparams.get("cell")):
        differences.insert(0, f"cell: {cell(saved['cell'])} there, {cell(hparams.get('cell'))} here")
    if differences:
        raise CheckpointError(
            f"ckpt_path: {path} was trained for another model or task ({'; '.join(differences)}). Resume with "
            "the run's own data=, cell= and model settings, or train anew without ckpt_path"
        )


def find_checkpoint(
    ckpt_path: Optional[str], output_dir: Path, hparams: Optional[Dict[str, Any]] = None
) -> Optional[Path]:
    """The checkpoint file ``ckpt_path`` means, checked (weights-only) before training starts.

    ``last``: this run dir's ``checkpoints/last.ckpt``, or None (start fresh) when
    there is none yet, so the same command works for the first start and every
    restart after a pre-emption. A run dir means its ``checkpoints/last.ckpt``.
    With ``hparams`` (the model about to train) it must be a checkpoint of the same model and task.
    """
    if ckpt_path in (None, ""):
        return None
    if str(ckpt_path) == "last":
        path = RunDir(output_dir).last_checkpoint
        if not path.is_file():
            rank_zero_info(f"seqframe: ckpt_path=last: no {path} yet, starting from scratch")
            return None
        path, checkpoint = newest_loadable(path.parent, str(ckpt_path))
    elif Path(str(ckpt_path)).is_dir():
        path, checkpoint = newest_loadable(RunDir(Path(str(ckpt_path))).checkpoint("last").parent, str(ckpt_path))
    else:  # a file the user named: that one or none
        path = Path(str(ckpt_path))
        checkpoint = load_checkpoint(path)  # refuses unreadable checkpoints and pickled objects with a clear message
    if hparams is not None:
        check_same_model(checkpoint, path, hparams)
    return path


def _newest_first(folder: Path) -> List[Path]:
    """The run's checkpoints: ``last.ckpt`` (the newest state, whatever a copy did to the files' times),
    then the others, newest first."""
    others = sorted((p for p in folder.glob("*.ckpt") if p.name != LAST), key=lambda p: p.stat().st_mtime_ns)
    return [p for p in [folder / LAST] if p.is_file()] + others[::-1]


def newest_loadable(folder: Path, what: str) -> Tuple[Path, Dict[str, Any]]:
    """The newest checkpoint in ``folder`` that loads (last, then best and any other) and its contents. Damaged
    ones are skipped with one warning naming them and the one used; a checkpoint refused for what it
    holds is never skipped. Raises :class:`CheckpointError` when none loads."""
    skipped: List[str] = []
    for path in _newest_first(folder):
        try:
            checkpoint = load_checkpoint(path)
        except DamagedCheckpointError as exc:
            skipped.append(f"{path.name} ({exc.reason})")
            continue
        if skipped:
            message = f"seqframe: ckpt_path={what}: skipped damaged {', '.join(skipped)}; resuming from {path}"
            rank_zero_only(log.warning)(message)
        return path, checkpoint
    raise CheckpointError(
        f"ckpt_path={what}: no checkpoint in {folder} loads (damaged: {', '.join(skipped) or 'none found'}); "
        "train anew in another run dir, or without ckpt_path"
    )
