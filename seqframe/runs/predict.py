"""``seqframe predict RUN FILE --out predictions.csv|.npy``: a trained model's answers for a new file.

``seqframe-predict`` is the same command under its older name.

The file is read like the training data (same columns or arrays, the saved
normalisation and classes: nothing is refitted), one output row per input
sequence, in the file's order. Targets in the file are not needed and not read.

A forecaster (``data=series``) forecasts the future instead:
``seqframe predict RUN --file series.csv [--out forecast.csv] [--plot forecast.png]``
writes the next ``horizon`` steps after the end of each series, with their
time stamps (and quantiles), and draws history and forecast per series.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from seqframe.errors import SeqframeError

OUTPUT_SUFFIXES = (".csv", ".npy")
FORECAST_FILE = "forecast.csv"  # a forecaster's --out when none is given
PLOT_SERIES = 8  # series drawn by --plot (4 per figure) unless --plot-series says otherwise


def run_batches(deployable, dataset, batch_size: int) -> List[np.ndarray]:
    """The deployable's output for every item of ``dataset``, in order (one array per item)."""
    import torch
    from torch.utils.data import DataLoader

    from seqframe.data.base import PER_STEP_TASKS
    from seqframe.data.files import pad_batch

    rows: List[np.ndarray] = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=pad_batch):
            x, _, *rest = batch
            lengths = rest[0] if rest else torch.full((len(x),), x.shape[1], dtype=torch.long)
            out = deployable(x, lengths).numpy()
            rows += [o[: int(n)] if deployable.task in PER_STEP_TASKS else o for o, n in zip(out, lengths)]
    return rows


MAX_PROBABILITY_COLUMNS = 20  # more classes (a word vocabulary): the CSV gives the top class's probability only


def output_names(state: Dict[str, Any], width: int) -> List[str]:
    """Column names of the outputs: ``p_<class>`` per class, else ``value_<k>``."""
    classes = state.get("classes")
    if classes is None:
        return [f"value_{k}" for k in range(width)]
    return [f"p_{c}" for c in classes] if len(classes) <= MAX_PROBABILITY_COLUMNS else ["p_prediction"]


def write_predictions(out: Path, ids: Sequence[Any], rows: List[np.ndarray], state: Dict[str, Any]) -> None:
    """``.npy``: ``[N, C]`` probabilities / values (per step: ``[N, T, C]``, NaN after each length);
    ``.csv``: id, predicted class (or values), one row per sequence (per step: per sequence and step)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    per_step = rows[0].ndim == 2
    if out.suffix == ".npy":
        if not per_step:
            np.save(out, np.stack(rows))
            return
        padded = np.full((len(rows), max(len(r) for r in rows), rows[0].shape[1]), np.nan, dtype=rows[0].dtype)
        for i, r in enumerate(rows):
            padded[i, : len(r)] = r
        np.save(out, padded)
        return
    classes, names = state.get("classes"), output_names(state, rows[0].shape[-1])
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *(["step"] if per_step else []), *(["prediction"] if classes else []), *names])
        for seq_id, row in zip(ids, rows):
            for step, values in enumerate(row if per_step else [row]):
                best = int(np.argmax(values))
                label = [classes[best]] if classes else []
                shown = [values[best]] if names == ["p_prediction"] else values
                writer.writerow([seq_id, *([step] if per_step else []), *label, *(f"{v:.7g}" for v in shown)])


def predict(
    run: str,
    file: str,
    out: Optional[str],
    overrides: Sequence[str] = (),
    batch_size: int = 256,
    plot: Optional[str] = None,
    plot_series: int = PLOT_SERIES,
) -> int:
    """Write predictions for ``file`` to ``out`` (a forecaster: the future of each series, and with ``plot``
    its figure); returns the number of sequences (series)."""
    from seqframe.runs.deployable import Deployable
    from seqframe.runs.loading import load_run

    trained = load_run(run)
    if (trained.data_state or {}).get("forecast"):
        from seqframe.runs.forecast import forecast_file

        return forecast_file(trained, file, Path(out or FORECAST_FILE), overrides, plot, plot_series)
    if out is None:
        raise SeqframeError("--out: give the predictions file, e.g. --out predictions.csv (or .npy)")
    if plot is not None:
        raise SeqframeError("--plot draws forecasts: it needs a run trained with data=series")
    target = Path(out)
    if target.suffix not in OUTPUT_SUFFIXES:
        raise SeqframeError(f"--out {out}: give a .csv or .npy file name")
    datamodule = trained.data_module(overrides)
    sequences, dataset = datamodule.read_new(file, with_targets=False)
    # the dataset is normalised already; inference builds no metrics
    deployable = Deployable(trained.model(metrics=False), trained.data_state, normalize=False)
    rows = run_batches(deployable, dataset, batch_size)
    write_predictions(target, sequences.ids, rows, trained.data_state or {})
    return len(rows)


def build_parser(prog: str = "seqframe-predict") -> argparse.ArgumentParser:
    """The command line of ``seqframe-predict``, which ``seqframe predict`` shares."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run dir of seqframe-train (its best checkpoint) or a .ckpt file")
    parser.add_argument("file", nargs="?", help="the new data, in the training data's format")
    parser.add_argument("--file", dest="file_option", metavar="FILE", help="the same as FILE (forecasters: the series)")
    parser.add_argument(
        "--out", help=f"predictions.csv (id, class, probabilities) or .npy; forecasters: default {FORECAST_FILE}"
    )
    parser.add_argument("--plot", metavar="PNG", help="forecasters: draw history, forecast and interval per series")
    parser.add_argument("--plot-series", type=int, default=PLOT_SERIES, help="how many series --plot draws")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("overrides", nargs="*", help="data.key=value: how to read the file, if not as in training")
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: str = "seqframe-predict") -> int:
    """``seqframe-predict`` (and ``seqframe predict``, as ``prog``): write the predictions."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if (args.file is None) == (args.file_option is None):
        parser.error("give the new data once: FILE or --file FILE")
    if args.file is not None and args.out is None:  # the classic form keeps its required --out
        parser.error("the following arguments are required: --out")
    try:
        count = predict(
            args.run,
            args.file or args.file_option,
            args.out,
            args.overrides,
            args.batch_size,
            args.plot,
            args.plot_series,
        )
    except (SeqframeError, FileNotFoundError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"{prog}: predictions for {count} sequences written to {args.out or FORECAST_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
