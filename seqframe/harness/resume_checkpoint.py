"""Which checkpoint ``ckpt_path`` means, checked before training starts: readable weights-only, and
written for the same model and task."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from pytorch_lightning.utilities import rank_zero_info

from seqframe.harness.checkpoints import CheckpointError, load_checkpoint
from seqframe.harness.rundir import RunDir

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
    else:
        path = Path(str(ckpt_path))
        if path.is_dir():
            path = RunDir(path).checkpoint("last")
    checkpoint = load_checkpoint(path)  # refuses unreadable checkpoints and pickled objects with a clear message
    if hparams is not None:
        check_same_model(checkpoint, path, hparams)
    return path
