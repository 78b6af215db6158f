"""``seqframe eval RUN``: a trained model's metrics, the same ones training logs.

``seqframe-eval`` is the same command under its older name.

Without ``--file`` it evaluates a split of the run's own data (``--split``,
split again with the run's seed, so the same sequences); with ``--file`` it
evaluates every sequence of a new file read with the saved normalisation and
classes. ``data.key=value`` overrides change how the data is read.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence

from seqframe.errors import SeqframeError

EVAL_SPLITS = ("test", "val", "train")


def evaluate(
    run: str, file: Optional[str] = None, split: str = "test", overrides: Sequence[str] = ()
) -> Dict[str, float]:
    """The metrics (``<split>/loss``, ``<split>/acc`` or ``/mse``, ...) of ``run`` on the data."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from seqframe.data.files import pad_batch
    from seqframe.runs.loading import load_run

    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    trained = load_run(run)
    model = trained.model()
    datamodule = trained.data_module(overrides)
    trainer = pl.Trainer(
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    if file is not None:
        _, dataset = datamodule.read_new(file, with_targets=True)
        loader = DataLoader(dataset, batch_size=datamodule.batch_size, collate_fn=pad_batch)
        results = trainer.test(model, dataloaders=loader, verbose=False)
    else:
        loaders = {"train": datamodule.train_dataloader, "val": datamodule.val_dataloader}
        results = trainer.test(model, dataloaders=loaders.get(split, datamodule.test_dataloader)(), verbose=False)
    return {key.replace("test/", f"{split if file is None else 'file'}/"): float(v) for key, v in results[0].items()}


def build_parser(prog: str = "seqframe-eval") -> argparse.ArgumentParser:
    """The command line of ``seqframe-eval``, which ``seqframe eval`` shares."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run dir of seqframe-train (its best checkpoint) or a .ckpt file in one")
    parser.add_argument("--file", help="evaluate every sequence of this file (with targets) instead of a split")
    parser.add_argument("--split", choices=EVAL_SPLITS, default="test", help="the run's split to evaluate")
    parser.add_argument("--out", help="also write the metrics to this JSON file")
    parser.add_argument("overrides", nargs="*", help="data.key=value: read the data differently than in training")
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: str = "seqframe-eval") -> int:
    """``seqframe-eval`` (and ``seqframe eval``, as ``prog``): print (and write) the metrics."""
    args = build_parser(prog).parse_args(argv)
    try:
        metrics = evaluate(args.run, args.file, args.split, args.overrides)
    except (SeqframeError, FileNotFoundError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
