"""How long worker slots sit idle in an Optuna search: the batch sweeper seqframe had before (ask
``n_jobs`` trials, launch them as one batch, wait for the slowest, repeat) against the per-slot one
(each slot starts its next trial as soon as its last one ends), on the same study: the same 9
trials (random sampler, seed 0: the same parameters by trial number), 3 joblib slots, tiny
adding-problem runs of 1 or 16 epochs (32 steps each).

    .venv/bin/python scripts/sweep_idle.py [--out DIR] [--storage URL]

Idle slot-seconds = slots x (last job end - first job start) - the jobs' own seconds (from each job
dir's .hydra/config.yaml, written as the job starts, to its summary.json, written as it ends).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from hydra.experimental.callback import Callback

from hydra_plugins.seqframe_optuna_sweeper.optuna_sweeper import OptunaSweeper

SLOTS, TRIALS = 3, 9


class BatchOptunaSweeper(OptunaSweeper):
    """The sweeper before: claim ``n_jobs`` trials, launch them as one batch, tell them all, repeat."""

    def _run_slots(self, study: Any, space: Dict[str, Any], fixed: List[str], lock: Any, slots: int) -> list:
        returns = []
        while True:
            trials = []
            for slot in range(slots):
                trial, _ = self._claim(study, space, lock, str(slot))
                if trial is None:
                    break
                trials.append(trial)
            if not trials:
                return returns
            returns.append(self._launch(study, trials, fixed))


class BatchPolicy(Callback):
    """A Hydra callback that gives the sweeper the batch policy (Hydra only instantiates sweepers
    from the ``hydra_plugins`` package, so the class is patched, after Hydra's plugin scan)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        import hydra_plugins.seqframe_optuna_sweeper.optuna_sweeper as module

        module.OptunaSweeper._run_slots = BatchOptunaSweeper._run_slots


def idle(sweep: Path) -> Dict[str, float]:
    """Span, busy and idle slot-seconds of the jobs in a sweep dir."""
    jobs = [p for p in sweep.iterdir() if (p / "summary.json").is_file()]
    starts = [(p / ".hydra" / "config.yaml").stat().st_mtime for p in jobs]
    ends = [(p / "summary.json").stat().st_mtime for p in jobs]
    span = max(ends) - min(starts)
    busy = sum(e - s for s, e in zip(starts, ends))
    return {"jobs": len(jobs), "span_s": span, "busy_s": busy, "idle_s": SLOTS * span - busy}


def search(mode: str, out: Path, storage: str) -> Dict[str, float]:
    """One search, ``batch`` or ``async``, into ``out/mode``."""
    train = Path(sys.executable).parent / "seqframe-train"
    command = [
        str(train), "-m", "hparams_search=adding_optuna", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={SLOTS}",
        f"hydra.sweeper.n_jobs={SLOTS}", "threads=1", f"hydra.sweeper.n_trials={TRIALS}",
        "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0", f"hydra.sweeper.storage={storage.format(mode=mode)}",
        f"hydra.sweeper.study_name=idle-{mode}", f"hydra.sweep.dir={out / mode}", "trainer.max_epochs=choice(1,16)",
        "model.hidden_size=16", "data.batch_size=32", "data.seq_len=10", "data.train_size=1024", "data.val_size=64",
        "test=false", "trainer.enable_progress_bar=false",
    ]
    if mode == "batch":
        command.append("+hydra.callbacks.batch_policy._target_=sweep_idle.BatchPolicy")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    subprocess.run(command, cwd=out, env=env, check=True, capture_output=True, text=True)
    return idle(out / mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="where the sweeps go (default: a temp dir)")
    parser.add_argument("--storage", default=None,
                        help="study storage URL, {mode} filled in (default: sqlite:///OUT/{mode}.db)")
    args = parser.parse_args()
    out = (args.out or Path(tempfile.mkdtemp(prefix="sweep-idle-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{out}/{{mode}}.db"
    results = {mode: search(mode, out, storage) for mode in ("batch", "async")}
    print("| sweeper | jobs | span s | busy slot-s | idle slot-s |\n| --- | --- | --- | --- | --- |")
    for mode, r in results.items():
        print(f"| {mode} | {r['jobs']} | {r['span_s']:.1f} | {r['busy_s']:.1f} | {r['idle_s']:.1f} |")
    ratio = results["batch"]["idle_s"] / max(results["async"]["idle_s"], 1e-9)
    print(f"\nidle batch / idle async: {ratio:.2f}x ({out})")


if __name__ == "__main__":
    main()
