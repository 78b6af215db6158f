"""Loading checkpoints safely: tensors and plain values only, never arbitrary pickled code.

Every place seqframe reads a checkpoint (resume, evaluate, predict, export)
goes through :func:`load_checkpoint`, so a checkpoint from an untrusted source
cannot execute anything: ``torch.load(weights_only=True)`` refuses any
pickled object that is not a tensor or a plain container, and we turn that
refusal into a message that says what happened and what to do.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, Union

from seqframe.errors import SeqframeError


class CheckpointError(SeqframeError):
    """A checkpoint that is missing, unreadable, or holds objects seqframe will not unpickle."""


class DamagedCheckpointError(CheckpointError):
    """A file that does not read as a checkpoint: cut short (a full disk, a copy or a node lost
    mid-write) or no checkpoint at all. Resuming may fall back to an older checkpoint; a
    checkpoint refused for what it holds (:class:`CheckpointError`) is never skipped silently."""

    def __init__(self, message: str, reason: str = "damaged") -> None:
        super().__init__(message)
        self.reason = reason  # a few words for a list of skipped files


ZIP_START = b"PK\x03\x04"  # torch.save's archive starts with a zip entry; a cut one has no directory at its end


def _refused_object(exc: Exception) -> str:
    """The line of torch's message that names the object it refused (its other lines suggest unsafe loading)."""
    for line in str(exc).splitlines():
        if "GLOBAL" in line or "Unsupported" in line:
            return "torch refused: " + line.split("error:", 1)[-1].strip()
    return ""


def _is_checkpoint_format(path: Path) -> bool:
    """torch.save's zip archive, or a pickle (protocol 2+ starts with the PROTO opcode, 0x80)."""
    with path.open("rb") as handle:
        first = handle.read(1)
    return first == b"\x80" or zipfile.is_zipfile(path)


def _not_a_checkpoint(path: Path) -> CheckpointError:
    with path.open("rb") as handle:
        if handle.read(len(ZIP_START)) == ZIP_START:
            return DamagedCheckpointError(
                f"checkpoint {path} is damaged: a torch archive cut short ({path.stat().st_size} bytes; a full "
                "disk, a copy cut short or a node lost mid-write?); use another checkpoint of the run",
                reason=f"cut short at {path.stat().st_size} bytes",
            )
    return DamagedCheckpointError(
        f"{path} is not a torch checkpoint file; give a .ckpt that seqframe-train wrote "
        "(<run dir>/checkpoints/last.ckpt) or the run dir",
        reason="not a checkpoint",
    )


def load_checkpoint(path: Union[str, Path], map_location: Any = "cpu") -> Dict[str, Any]:
    """The checkpoint at ``path`` as a dict, loaded weights-only."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (give a .ckpt file or a run dir holding checkpoints/)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _is_checkpoint_format(path):  # neither torch's zip nor a pickle: a CSV, say
            raise _not_a_checkpoint(path) from None
        raise CheckpointError(
            f"checkpoint {path} holds pickled objects other than tensors and plain values, so it was not loaded "
            f"(loading it could run arbitrary code). Only load checkpoints you trust; seqframe's own checkpoints "
            f"never need this. {_refused_object(exc)}"
        ) from None
    except Exception as exc:  # torch's reader fails in many ways on files that are not checkpoints
        if not _is_checkpoint_format(path):
            raise _not_a_checkpoint(path) from None
        raise DamagedCheckpointError(
            f"checkpoint {path} could not be read ({exc}); is it a whole torch checkpoint?", reason="unreadable"
        ) from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} is a {type(checkpoint).__name__}, not a Lightning checkpoint dict")
    return checkpoint
