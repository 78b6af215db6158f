"""Property-based fuzzing of ``seqframe.Recurrent`` over sizes, lengths, layers, directions, cells, backends.

For every drawn case: no crash, the documented shapes, outputs zero at padded
steps, and each sequence's outputs and final state equal running it alone,
unpadded (the padded steps are inert). ``compile`` is left out (minutes to start).
"""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import seqframe
from seqframe.core.state import map_state

CELLS = sorted(info.name for info in seqframe.list_cells())  # rnn, lstm, gru and any installed plugin's


@st.composite
def cases(draw):
    batch = draw(st.integers(1, 4))
    steps = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.sampled_from([1, steps]) | st.integers(1, steps), min_size=batch, max_size=batch))
    return {
        "cell": draw(st.sampled_from(CELLS)),
        "backend": draw(st.sampled_from(["auto", "loop"])),
        "input_size": draw(st.integers(1, 5)),
        "hidden_size": draw(st.integers(1, 5)),
        "num_layers": draw(st.integers(1, 3)),
        "bidirectional": draw(st.booleans()),
        "batch": batch,
        "steps": steps,
        "lengths": lengths,
        "seed": draw(st.integers(0, 2**16)),
    }


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


@settings(max_examples=100, deadline=None)
@given(cases())
def test_recurrent_shapes_and_inert_padding(case):
    torch.manual_seed(case["seed"])
    layer = seqframe.Recurrent(
        case["cell"],
        case["input_size"],
        case["hidden_size"],
        num_layers=case["num_layers"],
        bidirectional=case["bidirectional"],
        backend=case["backend"],
    ).eval()
    b, t, directions = case["batch"], case["steps"], 2 if case["bidirectional"] else 1
    x = torch.randn(b, t, case["input_size"])
    lengths = torch.tensor(case["lengths"])
    with torch.no_grad():
        out, state = layer(x, lengths=lengths)
        assert out.shape == (b, t, directions * case["hidden_size"])
        for part in as_tuple(state):
            assert part.shape[:2] == (case["num_layers"] * directions, b)
        assert torch.isfinite(out).all()
        for i, n in enumerate(case["lengths"]):
            assert (out[i, n:] == 0).all(), "outputs at padded steps must be zero"
            alone_out, alone_state = layer(x[i : i + 1, :n])
            torch.testing.assert_close(out[i : i + 1, :n], alone_out, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(
                map_state(lambda s, i=i: s[:, i : i + 1], state), alone_state, rtol=1e-5, atol=1e-5
            )
