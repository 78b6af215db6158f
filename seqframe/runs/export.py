"""``seqframe export RUN --format pt2|onnx``: a trained model that runs without seqframe.

What is exported is :class:`~seqframe.runs.deployable.Deployable` (normalisation,
model, probabilities), traced with ``torch.export`` on the step-loop path,
which every cell has and which gives the same numbers as the fast paths:

* ``pt2``: ``torch.export.save``; run it with ``torch.export.load(f).module()(x, lengths)``
  (needs only torch);
* ``onnx``: the ONNX exporter built on ``torch.export`` (``pip install 'seqframe[onnx]'``);
  run it with onnxruntime (needs only onnxruntime and numpy).

The batch size is free, and so is the time size: the steps run in a loop the
exported graph keeps (:class:`~seqframe.runs.deployable.AnyLengthDeployable`;
an ONNX ``Loop``), so sequences of any length run, longer than any seen in
training; pad shorter sequences of a batch and pass their ``lengths``. A
bidirectional model (its reverse direction starts at the end) is unrolled over
a fixed time size instead, ``max_len`` (the training data's longest sequence
unless ``--max-len``), as is every model on a torch without ``torch.while_loop``.

``--step`` exports :class:`~seqframe.runs.deployable.StepDeployable` instead: one time step per call,
``(x, state) -> (output, new_state)``, the state as explicit inputs and outputs (ONNX names ``x``,
``state_0``.. in, ``output``, ``new_state_0``.. out; shapes in the JSON), for streams of any length
at O(1) work per step; it is checked step by step against the whole-sequence model. TorchScript
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


def describe(fmt: str, deployable, run, steps: int, any_length: bool) -> Dict[str, Any]:
    """The sidecar JSON: how to call the exported model and read its output."""
    spec = deployable.model.spec
    state = run.data_state or {}
    time = "T" if any_length else steps
    features = (
        {"x": f"int64 [batch, {time}] token ids (the ids of 'classes')"}
        if spec.vocab_size is not None
        else {"x": f"float32 [batch, {time}, {spec.input_size}] raw features", "features": state.get("features")}
    )
    valid = "each in 1..T" if any_length else f"each in 1..{steps}"
    output = f"values [batch, {spec.num_outputs}]" if spec.task in REGRESSION_TASKS else "class probabilities"
    return {
        "format": fmt,
        "checkpoint": str(run.checkpoint),
        "cell": run.hparams["cell"],
        "task": spec.task,
        "inputs": {**features, "lengths": f"int64 [batch], {valid}: valid steps; pad x after them"},
        "time_steps": "any (T >= 1; a loop in the graph)" if any_length else f"fixed: {steps}",
        "max_len": None if any_length else steps,
        "longest_training_sequence": (run.data_state or {}).get("max_len"),
        "output": output + (" at every step: [batch, T, ...]" if spec.task in PER_STEP_TASKS else ""),
        "classes": state.get("classes"),
        "normalisation": "applied inside the model" if deployable.normalize else "none",
    }


def _export_program(deployable, x, lengths, any_length: bool = False):
    """``torch.export`` with a free batch size, and a free time size for a model whose steps run in a loop
    the graph keeps (otherwise the step loop unrolls over the example's fixed time size)."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    x_dims = {0: batch, 1: torch.export.Dim("time", min=1)} if any_length else {0: batch}
    return torch.export.export(deployable, (x, lengths), dynamic_shapes={"x": x_dims, "lengths": {0: batch}})


def _export_step_program(step, x, state):
    """``torch.export`` of one step with a free batch size (``x``'s dim 0, each state part's dim 1)."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    shapes = {"x": {0: batch}, "state": tuple({1: batch} for _ in state)}
    return torch.export.export(step, (x, state), dynamic_shapes=shapes)


def step_names(parts: int) -> tuple[list, list]:
    """The ONNX input and output names of a step model whose state has ``parts`` tensors."""
    return ["x", *(f"state_{i}" for i in range(parts))], ["output", *(f"new_state_{i}" for i in range(parts))]


def _write(fmt: str, deployable, x, lengths, out: Path):
    """Write the file; returns a function that runs it (for the check). A step model (``lengths``: its
    state tuple) runs as ``(x, state) -> (output, new_state)``."""
    import torch

    from seqframe.runs.deployable import AnyLengthDeployable

    step = isinstance(lengths, tuple)
    if step:
        program = _export_step_program(deployable, x, lengths)
    else:
        program = _export_program(deployable, x, lengths, isinstance(deployable, AnyLengthDeployable))
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
    inputs, outputs = step_names(len(lengths)) if step else (["x", "lengths"], ["output"])
    torch.onnx.export(
        program,
        (x, lengths),
        str(out),
        dynamo=True,
        external_data=False,  # one self-contained file (models under 2 GB)
        verbose=False,
        input_names=inputs,
        output_names=outputs,
    )
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])

    def run(a, b):
        given = (a, *b) if step else (a, b)
        found = [torch.from_numpy(v) for v in session.run(None, {n: t.numpy() for n, t in zip(inputs, given)})]
        return (found[0], tuple(found[1:])) if step else found[0]

    return run


def run_steps(step_model, x, state):
    """``x`` ``[B, T, ...]`` through a step model one step at a time from ``state``: the outputs ``[B, T, ...]``."""
    import torch

    outputs = []
    for t in range(x.shape[1]):
        output, state = step_model(x[:, t], state)
        outputs.append(output)
    return torch.stack(outputs, dim=1)


def step_gap(exported, step, steps: int) -> float:
    """How far the exported step model, run step by step over ``steps`` steps (batch 5: a free batch size),
    is from the whole-sequence model (at every step for per-step tasks, else at the last)."""
    import torch

    from seqframe.runs.deployable import Deployable

    x, _ = example_inputs(step.model, 5, steps, seed=1)
    whole = Deployable.forward(step, x, torch.full((len(x),), steps))
    streamed = run_steps(exported, x, step.initial_state(len(x)))
    return float((streamed if step.task in PER_STEP_TASKS else streamed[:, -1]).sub(whole).abs().max())


def write_or_explain(fmt: str, deployable, x, lengths, out: Path, cell: str):
    """:func:`_write`, with the exporter's own failure said in one line naming the cell and format."""
    try:
        return _write(fmt, deployable, x, lengths, out)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"cell {cell!r} could not be exported as {fmt}: {first_line(exc)}") from exc


def write_any_length(fmt: str, deployable, x, lengths, out: Path):
    """Write an :class:`~seqframe.runs.deployable.AnyLengthDeployable`; where torch cannot keep the cell's
    step as a loop (e.g. views of one parameter taken inside ``step``, which alias each other among the
    loop's inputs), unroll ``x``'s time size instead, as for a bidirectional model. Returns
    ``(the runner, what was exported, None or why it was unrolled)``."""
    from seqframe.runs.deployable import Deployable

    try:
        return _write(fmt, deployable, x, lengths, out), deployable, None
    except ExportError:
        raise
    except Exception as exc:
        reason = first_line(exc)
    fixed = Deployable(deployable.model, deployable.data_state).eval()
    return write_or_explain(fmt, fixed, x, lengths, out, deployable.model.hparams["cell"]["name"]), fixed, reason


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines[0] if lines else "")
    return f"{type(exc).__name__}: {text}"


def whole_gap(exported, deployable, steps: int) -> float:
    """How far the exported whole-sequence model is from ``deployable`` on a batch of 5 random sequences of
    up to ``steps`` steps, over their valid steps (per-step answers past a sequence's length are unspecified)."""
    import torch

    x, lengths = example_inputs(deployable.model, 5, steps, seed=1)
    gap = (exported(x, lengths) - deployable(x, lengths)).abs()
    if deployable.task in PER_STEP_TASKS:
        valid = torch.arange(steps)[None, :] < lengths[:, None]
        gap = gap[valid]
    return float(gap.max())


def describe_step(fmt: str, step, run) -> Dict[str, Any]:
    """The sidecar JSON of a step model: its inputs and outputs, the state's shapes and initial value."""
    spec = step.model.spec
    state = run.data_state or {}
    initial = step.initial_state(1)
    x = (
        "int64 [batch]: one token id per stream (the ids of 'classes')"
        if spec.vocab_size is not None
        else f"float32 [batch, {spec.input_size}]: one step's raw features per stream"
    )
    inputs = step_names(len(initial))[0]
    shapes = ["[" + ", ".join(map(str, [part.shape[0], "batch", *part.shape[2:]])) + "]" for part in initial]
    output = f"values [batch, {spec.num_outputs}]" if spec.task in REGRESSION_TASKS else "class probabilities"
    zeros = all(not bool(part.any()) for part in initial)
    return {
        "format": fmt,
        "mode": "step",
        "checkpoint": str(run.checkpoint),
        "cell": run.hparams["cell"],
        "task": spec.task,
        "call": "pt2: output, new_state = program(x, (state_0, ...)); onnx: the names below",
        "inputs": {"x": x, **{name: f"float32 {shape}" for name, shape in zip(inputs[1:], shapes)}},
        "outputs": {
            "output": output + (" for this step" if spec.task in PER_STEP_TASKS else " if the sequence ended here"),
            **{f"new_{name}": f"float32 {shape}: the next call's {name}" for name, shape in zip(inputs[1:], shapes)},
        },
        "initial_state": "zeros" if zeros else [part[:, 0].tolist() for part in initial],
        "classes": state.get("classes"),
        "normalisation": "applied inside the model" if step.normalize else "none",
    }


def export(
    run_path: str, fmt: str, out: Optional[str] = None, max_len: Optional[int] = None, step: bool = False
) -> Path:
    """Export the run's best model (``step``: its one-step model for streaming); returns the written file
    (its :func:`sidecar` description beside it)."""
    import torch

    from seqframe.runs.deployable import AnyLengthDeployable, Deployable, StepDeployable, loops_export
    from seqframe.runs.loading import load_run

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    run = load_run(run_path)
    if (run.data_state or {}).get("forecast"):
        raise ExportError(
            f"{run_path} is a forecasting model (data=series): it reads windows that seqframe builds (each series "
            f"standardised with its saved statistics, calendar features) and answers in those standardised units, "
            f"so an exported file alone would give wrong numbers. Forecast with seqframe predict RUN --file FILE "
            f"(the next horizon steps of every series, in the data's units); exporting it is not supported yet"
        )
    steps = max_len or (run.data_state or {}).get("max_len")
    if not steps:
        raise ExportError("this run's data has no saved max_len; give the time size with --max-len N")
    model = run.model(backend="loop", metrics=False)
    any_length = not step and loops_export(model)
    kind = StepDeployable if step else AnyLengthDeployable if any_length else Deployable
    deployable = kind(model, run.data_state).eval()
    name = f"model.step.{fmt}" if step else f"model.{fmt}"
    target = Path(out) if out else run.checkpoint.parent.parent / "export" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    steps = max(2, int(steps))  # a trace of one step would fix the time size at 1
    x, lengths = example_inputs(deployable.model, 3, steps)
    if step:  # one step's input and the state
        x, lengths = x[:, 0], deployable.initial_state(3)
    cell = run.hparams["cell"]["name"]
    unrolled_because = None
    with torch.no_grad():
        if any_length:
            exported, deployable, unrolled_because = write_any_length(fmt, deployable, x, lengths, target)
            any_length = unrolled_because is None
            if unrolled_because:
                print(
                    f"seqframe export: cell {cell!r} cannot run as a loop in the exported graph "
                    f"({unrolled_because}); exported with a fixed time size of {x.shape[1]} steps (--max-len N)"
                )
        else:
            exported = write_or_explain(fmt, deployable, x, lengths, target, cell)
        if step:  # streamed over more steps than a training window, against the whole sequence at once
            gap = step_gap(exported, deployable, 2 * int(steps) + 1)
        else:  # another batch size, and (any length) a short and a longer time size than any in training
            lengths_checked = (1, 2 * int(steps) + 3) if any_length else (int(steps),)
            gap = max(whole_gap(exported, Deployable(model, run.data_state), t) for t in lengths_checked)
    if not gap <= TOLERANCE:
        raise ExportError(f"the exported {fmt} model differs from the trained one by {gap:.2g} (> {TOLERANCE})")
    info = describe_step(fmt, deployable, run) if step else describe(fmt, deployable, run, int(steps), any_length)
    info["max_abs_difference_at_export"] = gap
    if unrolled_because:
        info["time_steps"] += f" (the steps could not run as a loop in the graph: {unrolled_because})"
    sidecar(target).write_text(json.dumps(info, indent=2) + "\n")
    return target
