"""``seqframe bench --generated``: cells written as plain equations, the way a newcomer writes them.

The cells below are what a plugin author who never read the benchmark would
write: ``super().__init__()`` with no arguments, ``nn.Linear`` for every
matrix, ``chunk`` on the gates, no ``scan`` (and, for the LSTM, once more as
the textbook's one Linear over ``cat([x, h])``, without ``project``). Each is timed on its step loop and
on the generated kernels (what ``backend=auto`` gives it), against torch.nn's
fused kernel of its family and, where torch has none, against the best
hand-fused version written here (a whole-sequence ``autograd.Function`` with
the backward written out and the recurrent weight's gradient as one matrix
product over all steps). The start-up table says what a user waits for before
the first training step, with a cold and a warm compiler cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

import seqframe
from seqframe.tools.bench import SIZES, Candidate, _median_ms, time_candidates


class NewcomerLSTM(seqframe.Cell):
    """An LSTM from the textbook equations."""

    name = "newcomer_lstm"
    has_cell_state = True

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.w = nn.Linear(input_size, 4 * hidden_size)
        self.u = nn.Linear(hidden_size, 4 * hidden_size)

    def project(self, x: Tensor) -> Tensor:
        return self.w(x)

    def step(self, p_t: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        h, c = state
        i, f, g, o = (p_t + self.u(h)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def initial_state(self, batch, device=None, dtype=None):
        h = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return h, h.clone()


class TextbookLSTM(seqframe.Cell):
    """The LSTM of a textbook's ``W [x; h] + b``: one Linear over the concatenation, named ``gates``;
    no ``project`` (each raw step comes into ``step``) and no ``initial_state`` (``has_cell_state``)."""

    name = "textbook_lstm"
    has_cell_state = True

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gates = nn.Linear(input_size + hidden_size, 4 * hidden_size)

    def step(self, x: Tensor, state: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        h, c = state
        i, f, g, o = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class NewcomerMGU(seqframe.Cell):
    """A minimal gated unit (Zhou et al. 2016): one forget gate, GRU-like."""

    name = "newcomer_mgu"
    gates = 1

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.w = nn.Linear(input_size, 2 * hidden_size)
        self.u_f = nn.Linear(hidden_size, hidden_size)
        self.u_h = nn.Linear(hidden_size, hidden_size, bias=False)

    def project(self, x: Tensor) -> Tensor:
        return self.w(x)

    def step(self, p_t: Tensor, h: Tensor) -> Tuple[Tensor, Tensor]:
        p_f, p_h = p_t.chunk(2, dim=-1)
        f = torch.sigmoid(p_f + self.u_f(h))
        candidate = torch.tanh(p_h + self.u_h(f * h))
        h = (1 - f) * h + f * candidate
        return h, h


class NewcomerIndRNN(seqframe.Cell):
    """An IndRNN (Li et al. 2018): each unit sees only its own past, through one weight."""

    name = "newcomer_indrnn"

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.w = nn.Linear(input_size, hidden_size)
        self.u = nn.Parameter(torch.empty(hidden_size).uniform_(0, 1))

    def project(self, x: Tensor) -> Tensor:
        return self.w(x)

    def step(self, p_t: Tensor, h: Tensor) -> Tuple[Tensor, Tensor]:
        h = torch.relu(p_t + self.u * h)
        return h, h


class _IndRNNSequence(torch.autograd.Function):
    """IndRNN by hand: ``h_t = relu(p_t + u h_{t-1})``, backward written out."""

    @staticmethod
    def forward(ctx: Any, p: Tensor, u: Tensor, h0: Tensor) -> Tensor:
        p_time = p.transpose(0, 1).contiguous()
        h = torch.empty_like(p_time)
        state = h0
        for t in range(p_time.shape[0]):
            state = torch.relu_(torch.addcmul(p_time[t], u, state, out=h[t]))
        ctx.save_for_backward(h, u, h0)
        return h.transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        h, u, h0 = ctx.saved_tensors
        g_out = grad.transpose(0, 1)
        g_pre = torch.empty_like(h)
        carry = torch.zeros_like(h0)
        for t in range(h.shape[0] - 1, -1, -1):
            torch.mul(g_out[t] + carry, h[t] > 0, out=g_pre[t])
            carry = g_pre[t] * u
        previous = torch.cat([h0.unsqueeze(0), h[:-1]])
        return g_pre.transpose(0, 1), (g_pre * previous).sum((0, 1)), carry


class HandIndRNN(nn.Module):
    """The newcomer's IndRNN, hand-fused: the reference for its generated kernels."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = NewcomerIndRNN(input_size, hidden_size)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        h0 = x.new_zeros(x.shape[0], self.cell.hidden_size)
        out = _IndRNNSequence.apply(self.cell.project(x), self.cell.u, h0)
        return out, out[:, -1]


class _MGUSequence(torch.autograd.Function):
    """MGU by hand: per step two small products forward, three backward; the recurrent weights'
    gradients as one product over all ``T x B`` rows after the loop."""

    @staticmethod
    def forward(ctx: Any, p: Tensor, u_f: Tensor, b_f: Tensor, u_h: Tensor, h0: Tensor) -> Tensor:
        p_f, p_h = p.transpose(0, 1).contiguous().chunk(2, dim=-1)
        steps = p_f.shape[0]
        hs, fs, ns = torch.empty_like(p_f), torch.empty_like(p_f), torch.empty_like(p_f)
        h = h0
        for t in range(steps):
            f = torch.sigmoid(torch.addmm(p_f[t] + b_f, h, u_f.t()), out=fs[t])
            n = torch.tanh(torch.addmm(p_h[t], f * h, u_h.t()), out=ns[t])
            h = torch.add(h, f * (n - h), out=hs[t])
        ctx.save_for_backward(hs, fs, ns, u_f, u_h, h0)
        return hs.transpose(0, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tuple[Tensor, ...]:
        hs, fs, ns, u_f, u_h, h0 = ctx.saved_tensors
        g_out = grad.transpose(0, 1)
        previous = torch.cat([h0.unsqueeze(0), hs[:-1]])
        g_f, g_n = torch.empty_like(hs), torch.empty_like(hs)
        carry = torch.zeros_like(h0)
        for t in range(hs.shape[0] - 1, -1, -1):
            g = g_out[t] + carry
            f, n, h = fs[t], ns[t], previous[t]
            torch.mul(g * f, 1 - n * n, out=g_n[t])
            g_fh = g_n[t] @ u_h
            torch.mul(g * (n - h) + g_fh * h, f * (1 - f), out=g_f[t])
            carry = g * (1 - f) + g_fh * f + g_f[t] @ u_f
        rows = previous.reshape(-1, previous.shape[-1])
        g_u_f = g_f.reshape(-1, g_f.shape[-1]).t() @ rows
        g_u_h = g_n.reshape(-1, g_n.shape[-1]).t() @ (fs * previous).reshape(-1, previous.shape[-1])
        g_p = torch.cat([g_f, g_n], dim=-1).transpose(0, 1)
        return g_p, g_u_f, g_f.sum((0, 1)), g_u_h, carry


class HandMGU(nn.Module):
    """The newcomer's MGU, hand-fused."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.cell = NewcomerMGU(input_size, hidden_size)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        c = self.cell
        h0 = x.new_zeros(x.shape[0], c.hidden_size)
        out = _MGUSequence.apply(c.project(x), c.u_f.weight, c.u_f.bias, c.u_h.weight, h0)
        return out, out[:, -1]


NEWCOMERS = {"lstm": NewcomerLSTM, "gru": NewcomerMGU, "rnn": NewcomerIndRNN}
TEXTBOOK = {"lstm": (TextbookLSTM,)}  # the same equations written without project, timed beside them
HAND_FUSED = {"gru": HandMGU, "rnn": HandIndRNN}
REFERENCES = {
    "lstm": lambda i, h: nn.LSTM(i, h, batch_first=True),
    "gru": lambda i, h: nn.GRU(i, h, batch_first=True),
    "rnn": lambda i, h: nn.RNN(i, h, nonlinearity="relu", batch_first=True),
}


def _recurrent(cell: type, backend: str):
    return lambda i, h: seqframe.Recurrent(cell, i, h, backend=backend)


def generated_table(size_names: Sequence[str], repeat: int, plugins: Sequence[str] = ()) -> List[dict]:
    """Each newcomer cell (and each named plugin cell) on its loop and its generated kernels, against
    torch.nn's kernel of its family and the hand-fused version; the kernels are built before timing."""
    from seqframe.core import generated

    results = []
    for size_name in size_names:
        for family, cell in NEWCOMERS.items():
            rows = [Candidate(family, f"torch.nn.{family.upper()} (fused)", REFERENCES[family], "reference")]
            if family in HAND_FUSED:
                rows.append(Candidate(family, f"{cell.name} hand-fused", HAND_FUSED[family], "hand"))
            rows += [Candidate(family, f"{cell.name} ({b})", _recurrent(cell, b), b) for b in ("loop", "generated")]
            rows += [Candidate(family, f"{c.name} (generated)", _recurrent(c, "generated"), "generated")
                     for c in TEXTBOOK.get(family, ())]
            rows += [Candidate("lstm", f"{p} (auto)", _recurrent(p, "generated"), "generated")
                     for p in plugins if family == "lstm"]
            time_candidates(rows, SIZES[size_name], repeat)
            generated.CACHE.wait()
            reference = _median_ms(rows[0].times)
            hand = _median_ms(rows[1].times) if family in HAND_FUSED else None
            for row in rows:
                median = _median_ms(row.times)
                results.append({
                    "size": size_name, "shape": "B={} T={} I={} H={}".format(*SIZES[size_name]), "family": family,
                    "model": row.label, "median_ms": median, "min_ms": min(row.times) * 1e3,
                    "ratio": median / reference, "ratio_hand": None if hand is None else median / hand,
                })
                print(f"  {size_name:6s} {row.label:34s} {median:9.2f} ms  x{median / reference:.2f}", flush=True)
    return results


def handwritten_table(size_names: Sequence[str], repeat: int) -> List[dict]:
    """Every installed cell with a hand-written sequence path of its own (``scan``) against the same
    cell on generated kernels: is the hand-written kernel still worth its code?"""
    from seqframe.core import generated
    from seqframe.tools.bench import family_of, scanning_cells

    results = []
    for size_name in size_names:
        for name in scanning_cells():
            family = family_of(seqframe.get_cell(name))
            rows = [Candidate(family, f"{name} (auto: its scan)", _recurrent(name, "auto"), "auto"),
                    Candidate(family, f"{name} (generated)", _recurrent(name, "generated"), "generated")]
            time_candidates(rows, SIZES[size_name], repeat)
            generated.CACHE.wait()
            own = _median_ms(rows[0].times)
            for row in rows:
                median = _median_ms(row.times)
                results.append({"size": size_name, "cell": name, "model": row.label, "median_ms": median,
                                "ratio": median / own})
                print(f"  {size_name:6s} {row.label:34s} {median:9.2f} ms  x{median / own:.2f}", flush=True)
    return results


def startup_probe(backend: str) -> None:
    """Run in a fresh process: seconds from the start to the first training step done, and (auto)
    until the generated kernels are ready; printed as JSON."""
    started = time.perf_counter()
    from seqframe.core import generated

    batch, steps, inputs, hidden = SIZES["medium"]
    model = seqframe.Recurrent(NewcomerLSTM, inputs, hidden, backend=backend)
    x = torch.randn(batch, steps, inputs)
    model(x)[0].sum().backward()
    first = time.perf_counter() - started
    generated.CACHE.wait()
    print(json.dumps({"first_step_s": first, "kernels_ready_s": time.perf_counter() - started}))


def startup_table() -> List[dict]:
    """Start-up with a cold compiler cache (an empty one) and a warm one, for ``auto`` (the loop
    runs while the kernels build) and ``generated`` (waits for them), each in a fresh process."""
    results = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, OMP_NUM_THREADS="1")
        code = "import sys; from seqframe.tools.bench_generated import startup_probe; startup_probe(sys.argv[1])"
        for cache_state in ("cold", "warm"):
            for backend in ("auto", "generated"):
                if cache_state == "cold" and backend == "generated":
                    continue  # the cold build is the same work for both; one is enough
                done = subprocess.run([sys.executable, "-c", code, backend], env=env, check=True,
                                      capture_output=True, text=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                results.append({"cache": cache_state, "backend": backend, **row})
                print(f"  {cache_state} {backend:9s} first step {row['first_step_s']:.1f} s, kernels ready "
                      f"{row['kernels_ready_s']:.1f} s", flush=True)
    return results


def to_markdown(report: Dict[str, Any]) -> List[str]:
    lines: List[str] = []
    if report.get("generated"):
        lines += [
            "",
            "## Cells written as plain equations (a newcomer's code), training step",
            "",
            "Ratio to torch.nn's fused kernel of the family (nn.RNN with relu for the IndRNN), and to the",
            "hand-fused version of the same cell (a whole-sequence autograd.Function written here).",
            "",
            "| size | family | model | median ms | min ms | ratio to torch.nn | ratio to hand-fused |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in report["generated"]:
            hand = "-" if r["ratio_hand"] is None else f"{r['ratio_hand']:.2f}"
            lines.append(f"| {r['size']} ({r['shape']}) | {r['family']} | {r['model']} | {r['median_ms']:.2f} | "
                         f"{r['min_ms']:.2f} | {r['ratio']:.2f} | {hand} |")
    if report.get("handwritten"):
        lines += ["", "## Hand-written sequence kernels against the same cell's generated kernels, training step",
                  "", "| size | cell | model | median ms | ratio to its own scan |",
                  "| --- | --- | --- | ---: | ---: |"]
        lines += [f"| {r['size']} | {r['cell']} | {r['model']} | {r['median_ms']:.2f} | {r['ratio']:.2f} |"
                  for r in report["handwritten"]]
    if report.get("generated_startup"):
        lines += ["", "## Start-up of the generated path (newcomer LSTM, medium size, fresh process)", "",
                  "| compiler cache | backend | first training step done (s) | kernels ready (s) |",
                  "| --- | --- | ---: | ---: |"]
        lines += [f"| {r['cache']} | {r['backend']} | {r['first_step_s']:.1f} | {r['kernels_ready_s']:.1f} |"
                  for r in report["generated_startup"]]
    return lines
