"""``data=numpy``: arrays on disk, ``X [N, T, F]``, ``y``, optional ``lengths``.

One ``.npz`` holding ``X``, ``y`` (and ``lengths``), or an ``.npy`` of ``X``
with ``data.targets=`` an ``.npy`` of ``y``. ``y`` is ``[N]`` or ``[N, 1]``
(one label or value per sequence), ``[N, K]`` real (K values to regress) or
``[N, T]`` integer (a label per step) or ``[N, T, K]`` real (K values per step; ``[N, T]`` real with
``task=per_step_regress``). ``lengths[i]`` is how many leading
steps of ``X[i]`` are real; the rest is padding and is never read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from seqframe.data.files import DataFileError, FileDataModule, Sequences, check_finite


def _load(path: Path) -> Dict[str, np.ndarray]:
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        return {"": np.load(path, allow_pickle=False)}
    except (ValueError, OSError) as exc:
        if "pickled" in str(exc):  # numpy's guess for any file that is not .npy/.npz (a CSV, say)
            raise DataFileError(
                f"{path}: not an .npy/.npz file of numbers (a text or pickled file?); for a CSV use data=csv, "
                "for arrays save them with np.savez"
            ) from None
        raise DataFileError(
            f"{path}: not a readable .npy/.npz of plain numbers ({exc}); save it with np.savez"
        ) from None


class NumpyDataModule(FileDataModule):
    """Sequences from numpy arrays; see the module docstring for the layout.

    Args: ``x_key``/``y_key``/``lengths_key`` name the arrays in an ``.npz``;
    ``targets``: the ``.npy`` of ``y`` when ``path`` is an ``.npy`` of ``X``.
    The other keys are :class:`~seqframe.data.files.FileDataModule`'s.
    """

    format_name = "numpy"
    per_step_hint = "give y of shape [N, T] (a label per step) or [N, T, K] (K real values per step)"

    def __init__(
        self,
        path: Optional[str] = None,
        targets: Optional[str] = None,
        x_key: str = "X",
        y_key: str = "y",
        lengths_key: str = "lengths",
        **options: Any,
    ) -> None:
        self.targets, self.x_key, self.y_key, self.lengths_key = targets, x_key, y_key, lengths_key
        super().__init__(path=path, **options)

    def _arrays(self, path: Path, with_targets: bool) -> tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        arrays = _load(path)
        if "" in arrays:  # a bare .npy of X
            x = arrays[""]
            y = _load(self.check_path(self.targets))[""] if with_targets and self.targets else None
            if with_targets and y is None:
                raise DataFileError(
                    f"{path} holds only X; add data.targets=/path/to/y.npy (or save X and y in one .npz)"
                )
            return x, y, None
        if self.x_key not in arrays:
            raise DataFileError(
                f"{path}: no array {self.x_key!r} (it has {sorted(arrays)}); set data.x_key= to the array of inputs"
            )
        if with_targets and self.y_key not in arrays:
            raise DataFileError(
                f"{path}: no array {self.y_key!r} (it has {sorted(arrays)}); set data.y_key= to the array of targets"
            )
        y = arrays[self.y_key] if with_targets else None
        return arrays[self.x_key], y, arrays.get(self.lengths_key)

    def read(self, path: Path, with_targets: bool) -> Sequences:
        x, y, lengths = self._arrays(path, with_targets)
        if x.ndim != 3 or x.dtype.kind not in "iuf":
            raise DataFileError(
                f"{path}: X has shape {x.shape} ({x.dtype}); it must be numbers of shape [sequences, steps, features] "
                f"(one feature: X[..., None])"
            )
        n, steps = x.shape[:2]
        if n == 0 or steps == 0:
            raise DataFileError(f"{path}: X has shape {x.shape}: no sequences or no steps; give at least one of each")
        if lengths is None:
            lengths = np.full(n, steps)
        if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
            raise DataFileError(
                f"{path}: lengths has shape {lengths.shape} ({lengths.dtype}); "
                f"it must be {n} integers, one per sequence"
            )
        bad = np.flatnonzero((lengths < 1) | (lengths > steps))
        if len(bad):
            raise DataFileError(
                f"{path}: lengths[{bad[0]}] = {lengths[bad[0]]} is not in 1..{steps} (X's steps); "
                f"fix lengths ({len(bad)} such entries)"
            )
        where = [f"sequence {i}" for i in range(n)]
        xs = [x[i, : lengths[i]] for i in range(n)]
        for i, seq in enumerate(xs):
            check_finite(seq, path, "X", [f"sequence {i} (X[{i}])"] * len(seq))
        ys = None
        if y is not None:
            ys = self._targets(path, y, n, steps, lengths)
        return Sequences(xs, ys, list(range(n)), where, [f"f{j}" for j in range(x.shape[2])])

    def _targets(self, path: Path, y: np.ndarray, n: int, steps: int, lengths: np.ndarray) -> list:
        if y.shape[:1] != (n,):
            raise DataFileError(
                f"{path}: y has shape {y.shape} but X has {n} sequences; give one target row per sequence of X"
            )
        if y.dtype.kind not in "iubfUS":
            raise DataFileError(f"{path}: y has dtype {y.dtype}; give numbers or strings")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.dtype.kind == "f":
            check_finite(y.reshape(n, -1), path, "y", [f"sequence {i} (y[{i}])" for i in range(n)])
        per_step = y.ndim == 2 and y.shape[1] == steps and y.dtype.kind in "iub" and self.task in ("auto", "per_step")
        if per_step:
            return [y[i, : lengths[i]] for i in range(n)]
        if y.ndim == 2 and y.shape[1] == steps and self.task == "per_step_regress":
            y = y[..., None]  # one value per step
        if y.ndim == 3 and y.shape[1] == steps and y.dtype.kind in "iuf":  # K values per step
            return [y[i, : lengths[i]].astype(np.float64) for i in range(n)]
        if y.ndim > 2:
            raise DataFileError(
                f"{path}: y has shape {y.shape}; use [N], [N, K], [N, steps] (per-step labels) "
                f"or [N, steps, K] (per-step values)"
            )
        return [y[i] for i in range(n)]
