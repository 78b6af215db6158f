"""The length sweep of ``seqframe bench``: ms per time step and peak memory of a training step at long T.

A cliff in cost per step (subnormal gradients flowing back through a long
sequence made x86 arithmetic ~100x slower) or memory that grows past what a
machine holds only shows at long sequences, so every model (the registry's
cells on ``auto`` and torch.nn's LSTM/GRU/RNN) is run at each length in the
same run. Each (model, T) runs in a fresh process: the peak resident memory is
a per-process maximum, so one process can measure only one model. A cell on
``auto`` is measured on the path it settles on: its generated kernels, built in
the background, are waited for after a short warm-up step (a row's ``path``
says which path ran). The process measures its memory over its first training
step (its high-water mark reset after imports, model and data, when Linux
allows; otherwise ``ru_maxrss`` less its value before the step), then times as many more steps as fit in a time
budget (at least one, at most ``repeat``): long sequences of slow cells get
fewer repetitions, and each row says how many it got.

Run as ``python -m seqframe.tools.bench_lengths JSON`` it is that worker.
"""

from __future__ import annotations

import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

LENGTHS = (100, 1000, 10000)
LENGTH_SHAPE = (64, 32, 128)  # batch, input, hidden
BUDGET_S = 20.0  # timed seconds per (model, T) after the first step; fewer repetitions when steps are slow
REFERENCE_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


@dataclass(frozen=True)
class Model:
    """One model of the sweep: a torch.nn reference (``backend == "reference"``) or a registry cell."""

    family: str
    name: str  # "LSTM" for torch.nn.LSTM, else the cell's registry name
    backend: str  # "reference" or "auto"

    @property
    def label(self) -> str:
        return f"torch.nn.{self.name} (fused)" if self.backend == "reference" else f"{self.name} ({self.backend})"


def models(families: Sequence[str]) -> List[Model]:
    """torch.nn's kernel of each family first, then every installed cell of that family on ``auto``."""
    from seqframe.core.registry import list_cells
    from seqframe.tools.bench import family_of

    chosen = []
    cells = [(info.name, family_of(info.cls)) for info in list_cells()]
    for family in families:
        chosen.append(Model(family, REFERENCE_NAMES[family], "reference"))
        chosen += [Model(family, name, "auto") for name, of in cells if of == family]
    return chosen


def supports_time_checkpoint() -> bool:
    """Whether this seqframe's ``Recurrent`` takes ``time_checkpoint`` (keep every K-th state)."""
    import seqframe

    return "time_checkpoint" in inspect.signature(seqframe.Recurrent).parameters


def _rss_kb(field: str) -> Optional[int]:
    """``VmRSS``/``VmHWM`` of this process in KiB from ``/proc`` (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _max_rss_kb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform == "darwin" else float(peak)  # bytes on macOS, KiB on Linux


def _reset_peak() -> Tuple[float, bool]:
    """Start measuring a peak here: ``(baseline KiB, whether the high-water mark was reset)``.

    Linux resets a process's ``VmHWM`` when ``5`` is written to ``/proc/self/clear_refs``; then the
    peak of what follows is ``VmHWM - VmRSS now``. Without it, ``ru_maxrss`` (which also holds the
    peak of the imports) is the baseline, and a step smaller than that peak reads as 0.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        rss = _rss_kb("VmRSS")
        if rss is not None and _rss_kb("VmHWM") is not None:
            return float(rss), True
    except OSError:
        pass
    return _max_rss_kb(), False


def _peak_kb(reset: bool) -> float:
    return float(_rss_kb("VmHWM") or 0) if reset else _max_rss_kb()


def measure(
    model: Model,
    steps: int,
    shape: Sequence[int],
    flush_denormal: bool,
    time_checkpoint: Optional[int],
    max_repeat: int,
    budget_s: float,
    threads: int = 1,
) -> Dict[str, float]:
    """In this process (a fresh one): peak memory of the first training step, then the step time.

    The step is forward over the sequence, a loss on the last output only, backward: the gradient
    that reaches early steps has come through every later one, as in a long-range task.
    """
    import torch
    from torch import nn

    import seqframe
    from seqframe.core import generated
    from seqframe.harness.numerics import set_flush_denormal
    from seqframe.tools.bench import training_step

    torch.set_num_threads(threads)
    flushed = set_flush_denormal(flush_denormal)
    batch, inputs, hidden = shape
    torch.manual_seed(0)
    if model.backend == "reference":
        net: nn.Module = getattr(nn, model.name)(inputs, hidden, batch_first=True)
    else:
        extra = {} if time_checkpoint is None else {"time_checkpoint": time_checkpoint}
        net = seqframe.Recurrent(model.name, inputs, hidden, backend=model.backend, **extra)
    x = torch.randn(batch, steps, inputs)
    warmup = 1 if time_checkpoint is None else 2 * time_checkpoint  # lazy set-ups (autograd's threads,
    training_step(net, x[:, :warmup], last_only=True)()  # kernels, checkpointing's imports) left out
    if model.backend != "reference":  # ``auto`` builds its generated kernels in the background: measure
        generated.CACHE.wait()  # the kernels it switches to, not the loop (or a build) meanwhile
        training_step(net, x[:, :warmup], last_only=True)()
    step = training_step(net, x, last_only=True)
    baseline, reset = _reset_peak()
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    peak_mb = max(_peak_kb(reset) - baseline, 0.0) / 1024
    repeat = max(1, min(max_repeat, int(budget_s / max(first, 1e-9))))
    inner = max(1, round(0.05 / max(first, 1e-9)))  # short steps: average enough to last 50 ms a sample
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            step()
        times.append((time.perf_counter() - start) / inner)
    median = statistics.median(times)
    return {
        "step_ms": median * 1e3,
        "min_ms": min(times) * 1e3,
        "ms_per_step": median * 1e3 / steps,
        "repeat": repeat,
        "peak_mb": peak_mb,
        "peak_reset": reset,
        "flushed": flushed,
        "path": "fused" if model.backend == "reference" else "/".join(net.paths()),  # what was measured
    }


@dataclass
class LengthSweep:
    """What the sweep runs: the lengths, the shape, the flush, the time checkpoint, the repetitions."""

    lengths: Sequence[int] = LENGTHS
    shape: Sequence[int] = LENGTH_SHAPE
    flush_denormal: bool = True
    time_checkpoint: Optional[int] = None
    max_repeat: int = 7
    budget_s: float = BUDGET_S


def run_model(model: Model, steps: int, sweep: LengthSweep, threads: int = 1) -> Dict[str, float]:
    """:func:`measure` of one model at one length in a fresh Python process (the last line it prints)."""
    job = {
        "model": asdict(model),
        "steps": steps,
        "shape": list(sweep.shape),
        "flush_denormal": sweep.flush_denormal,
        "time_checkpoint": None if model.backend == "reference" else sweep.time_checkpoint,
        "max_repeat": sweep.max_repeat,
        "budget_s": sweep.budget_s,
        "threads": threads,
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, "-m", "seqframe.tools.bench_lengths", json.dumps(job)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"length sweep: {model.label} at T={steps} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def length_table(sweep: LengthSweep, families: Sequence[str], threads: int = 1) -> dict:
    """Every model at every length, each in its own process; ms per time step, its ratio to the
    family's torch.nn kernel at the same T, and the step's peak memory."""
    if sweep.time_checkpoint is not None and not supports_time_checkpoint():
        raise ValueError("--time-checkpoint: this seqframe's Recurrent has no time_checkpoint option")
    chosen = models(families)
    print(
        f"  length sweep: B={sweep.shape[0]} I={sweep.shape[1]} H={sweep.shape[2]}, "
        f"flush_denormal={sweep.flush_denormal}, time_checkpoint={sweep.time_checkpoint}; "
        f"a fresh process per (model, T); up to {sweep.max_repeat} timed steps within {sweep.budget_s:g} s "
        "each, so fewer at long T",
        flush=True,
    )
    rows = []
    for steps in sweep.lengths:
        reference: Dict[str, float] = {}
        for model in chosen:
            result = run_model(model, steps, sweep, threads)
            if model.backend == "reference":
                reference[model.family] = result["ms_per_step"]
            row = {"T": steps, "family": model.family, "model": model.label, "backend": model.backend, **result}
            row["ratio"] = result["ms_per_step"] / reference[model.family]
            rows.append(row)
            print(
                f"  T={steps:<6d} {model.label:28s} {row['ms_per_step']:8.3f} ms/step  x{row['ratio']:.2f}  "
                f"{row['peak_mb']:8.1f} MB  (n={row['repeat']}, {row['path']})",
                flush=True,
            )
    return {
        "shape": "B={} I={} H={}".format(*sweep.shape),
        "lengths": list(sweep.lengths),
        "flush_denormal": sweep.flush_denormal,
        "time_checkpoint": sweep.time_checkpoint,
        "max_repeat": sweep.max_repeat,
        "budget_s": sweep.budget_s,
        "rows": rows,
    }


def to_markdown(table: dict) -> List[str]:
    """The "Length" section: ms per time step (ratio to the family's torch.nn at that T), then memory."""
    lengths = table["lengths"]
    by_model: Dict[str, Dict[int, dict]] = {}
    for r in table["rows"]:
        by_model.setdefault(r["model"], {})[r["T"]] = r
    head = "| model | " + " | ".join(f"T={t}" for t in lengths) + " |"
    rule = "| --- |" + " ---: |" * len(lengths)
    checkpoint = table["time_checkpoint"]
    flushed = all(r["flushed"] for r in table["rows"])  # what the workers got, not only what was asked
    peak = "its high-water mark" if all(r["peak_reset"] for r in table["rows"]) else "ru_maxrss"

    def cells(model: str, text) -> str:
        got = by_model[model]
        return f"| {model} | " + " | ".join(text(got[t]) if t in got else "-" for t in lengths) + " |"

    return [
        "",
        "## Length: training step per time step, {}, {}".format(
            table["shape"], "subnormals flushed" if flushed else "subnormals not flushed"
        ),
        "",
        "Forward over T steps, loss on the last output, backward; each (model, T) in a fresh process. "
        f"Median of up to {table['max_repeat']} timed steps after the first, as many as fit in "
        f"{table['budget_s']:g} s (n: fewer at long T). Cells on `auto`"
        + (f", `time_checkpoint={checkpoint}` (torch.nn without)" if checkpoint else "")
        + ", each measured on the path it settles on: "
        + ", ".join(sorted({f"{r['model']} {r.get('path', '?')}" for r in table["rows"] if r["backend"] == "auto"}))
        + ".",
        "",
        "ms per time step (ratio to the family's torch.nn kernel at the same T; n repetitions):",
        "",
        head,
        rule,
        *[cells(m, lambda r: f"{r['ms_per_step']:.3f} ({r['ratio']:.2f}; n={r['repeat']})") for m in by_model],
        "",
        f"Peak memory of the first training step at T (MB of resident memory, {peak}, above the process's after "
        "imports, model, data and a short warm-up step):",
        "",
        head,
        rule,
        *[cells(m, lambda r: f"{r['peak_mb']:.1f}") for m in by_model],
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The worker: one (model, T) from a JSON job; prints its result as the last line."""
    job = json.loads((sys.argv[1:] if argv is None else argv)[0])
    result = measure(
        Model(**job["model"]),
        job["steps"],
        job["shape"],
        job["flush_denormal"],
        job["time_checkpoint"],
        job["max_repeat"],
        job["budget_s"],
        job["threads"],
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
