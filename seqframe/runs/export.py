"""``seqframe export RUN --format pt2|onnx``: a trained model that runs without seqframe.

What is exported is :class:`~seqframe.runs.deployable.Deployable` (normalisation,
model, probabilities), traced with ``torch.export`` on the step-loop path,
which every cell has and which gives the same numbers as the fast paths:

* ``pt2``: ``torch.export.save``; run it with ``torch.export.load(f).module()(x, lengths)``
  (needs only torch);
* ``onnx``: the ONNX exporter built on ``torch.export`` (``pip install 'seqframe[onnx]'``);
  run it with onnxruntime (needs only onnxruntime and numpy).

The batch size is free; the time size is fixed at ``max_len`` (the training
data's longest sequence unless ``--max-len``): pad shorter sequences to it
and pass their ``lengths`` (padding does not change the answer). TorchScript
is not offered: ``torch.jit`` is deprecated in torch 2.13. A JSON file next
to the model describes its inputs and outputs; the export is checked against
the original model before it is reported written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from seqframe.data.base import PER_STEP_TASKS, REGRESSION_TASKS
from seqframe.errors import SeqframeError

FORMATS = ("pt2", "onnx")
TOLERANCE = 1e-5


def sidecar(model_file: Path) -> Path:
    """The JSON description beside an exported model: ``model.onnx`` -> ``model.onnx.json``."""
    return model_file.with_name(model_file.name + ".json")


class ExportError(SeqframeError):
    """A model that could not be exported, or whose export does not match it."""


def example_inputs(model, batch: int, steps: int, seed: int = 0):
    """Random inputs of the model's kind (features or token ids) and random valid lengths."""
    import torch

    g = torch.Generator().manual_seed(seed)
    spec = model.spec
    if spec.vocab_size is not None:
        x = torch.randint(0, spec.vocab_size, (batch, steps), generator=g)
    else:
        x = torch.randn(batch, steps, spec.input_size, generator=g)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    lengths[0] = steps
    return x, lengths


def describe(fmt: str, deployable, run, steps: int) -> Dict[str, Any]:
    """The sidecar JSON: how to call the exported model and read its output."""
    spec = deployable.model.spec
    state = run.data_state or {}
    features = (
        {"x": f"int64 [batch, {steps}] token ids (the ids of 'classes')"}
        if spec.vocab_size is not None
        else {"x": f"float32 [batch, {steps}, {spec.input_size}] raw features", "features": state.get("features")}
    )
    output = f"values [batch, {spec.num_outputs}]" if spec.task in REGRESSION_TASKS else "class probabilities"
    return {
        "format": fmt,
        "checkpoint": str(run.checkpoint),
        "cell": run.hparams["cell"],
        "task": spec.task,
        "inputs": {**features, "lengths": f"int64 [batch], each in 1..{steps}: valid steps; pad x after them"},
        "max_len": steps,
        "output": output + (" at every step: [batch, T, ...]" if spec.task in PER_STEP_TASKS else ""),
        "classes": state.get("classes"),
        "normalisation": "applied inside the model" if deployable.normalize else "none",
    }


def _export_program(deployable, x, lengths):
    """``torch.export`` with a free batch size (time is fixed: the step loop unrolls over it)."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    return torch.export.export(deployable, (x, lengths), dynamic_shapes={"x": {0: batch}, "lengths": {0: batch}})


def _write(fmt: str, deployable, x, lengths, out: Path):
    """Write the file; returns a function that runs it (for the check)."""
    import torch

    program = _export_program(deployable, x, lengths)
    if fmt == "pt2":
        torch.export.save(program, str(out))
        loaded = torch.export.load(str(out)).module()
        return lambda a, b: loaded(a, b)
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (the exporter needs it)
    except ImportError as exc:
        missing = f"--format onnx needs the onnx extra ({exc.name} is missing)"
        raise ExportError(f"{missing}: pip install 'seqframe[onnx]'") from None
    torch.onnx.export(
        program,
        (x, lengths),
        str(out),
        dynamo=True,
        external_data=False,  # one self-contained file (models under 2 GB)
        verbose=False,
        input_names=["x", "lengths"],
        output_names=["output"],
    )
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return lambda a, b: torch.from_numpy(session.run(None, {"x": a.numpy(), "lengths": b.numpy()})[0])


def export(run_path: str, fmt: str, out: Optional[str] = None, max_len: Optional[int] = None) -> Path:
    """Export the run's best model; returns the written file (its :func:`sidecar` description beside it)."""
    import torch

    from seqframe.runs.deployable import Deployable
    from seqframe.runs.loading import load_run

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    run = load_run(run_path)
    steps = max_len or (run.data_state or {}).get("max_len")
    if not steps:
        raise ExportError("this run's data has no saved max_len; give the time size with --max-len N")
    deployable = Deployable(run.model(backend="loop", metrics=False), run.data_state).eval()
    target = Path(out) if out else run.checkpoint.parent.parent / "export" / f"model.{fmt}"
    target.parent.mkdir(parents=True, exist_ok=True)
    x, lengths = example_inputs(deployable.model, 3, int(steps))
    with torch.no_grad():
        try:
            exported = _write(fmt, deployable, x, lengths, target)
        except ExportError:
            raise
        except Exception as exc:  # the exporter's own failure: say which cell and format
            raise ExportError(
                f"cell {run.hparams['cell']['name']!r} could not be exported as {fmt}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        x, lengths = example_inputs(deployable.model, 5, int(steps), seed=1)  # another batch size: dynamic batch
        gap = float((exported(x, lengths) - deployable(x, lengths)).abs().max())
    if not gap <= TOLERANCE:
        raise ExportError(f"the exported {fmt} model differs from the trained one by {gap:.2g} (> {TOLERANCE})")
    info = describe(fmt, deployable, run, int(steps))
    info["max_abs_difference_at_export"] = gap
    sidecar(target).write_text(json.dumps(info, indent=2) + "\n")
    return target
