"""Recurrent models used as their users use them: stateful truncated BPTT (``data.stateful=true``),
``seqframe generate`` and the streaming export (``seqframe export --step``)."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from runs import run, run_without_seqframe, summary
from test_resume import kill_group, start, wait_for_new_checkpoint

from seqframe.data.streams import StreamBatch, cut_streams
from seqframe.errors import SeqframeError
from seqframe.harness.checkpoints import load_checkpoint

QUIET = ["trainer.enable_progress_bar=false", "logger=csv", "threads=1"]


def repeats_corpus(path: Path, blocks: int, seed: int = 0) -> Path:
    """Blocks of 16 characters ``c.c.c.c.c.c.c.c.`` with ``c`` drawn from a/b per block: after a ``.``
    comes the ``c`` read one step before, so a model whose window starts at a ``.`` needs the state
    carried over from the previous batch to know it."""
    rng = random.Random(seed)
    path.write_text("".join((rng.choice("ab") + ".") * 8 for _ in range(blocks)))
    return path


def train_in_process(output_dir: Path, overrides: list) -> dict:
    """The real ``train()`` in this process (no start-up cost); its summary."""
    from hydra import compose, initialize_config_dir

    from seqframe.harness.train import config_dir, train

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*QUIET, *overrides])
    cfg.paths.output_dir = str(output_dir)
    try:
        return train(cfg)
    finally:
        torch.use_deterministic_algorithms(False)  # deterministic=true set it for this process


def test_streams_are_cut_in_order_and_each_batch_continues_the_last(tmp_path):
    """The order checked by hand: 26 tokens, 2 streams of 12 (the 26th is only a target), chunks of 4."""
    chunks = cut_streams(torch.arange(26), batch_size=2, seq_len=4, what="x", rank=0, world_size=1)
    assert [b.x.tolist() for b in chunks] == [
        [[0, 1, 2, 3], [12, 13, 14, 15]],
        [[4, 5, 6, 7], [16, 17, 18, 19]],
        [[8, 9, 10, 11], [20, 21, 22, 23]],
    ]
    assert all(torch.equal(b.y, b.x + 1) for b in chunks)  # the next token of each
    assert [b.reset.tolist() for b in chunks] == [[True, True], [False, False], [False, False]]
    # two processes, one stream each: rank 1 reads the second half; the last chunk is shorter
    second = cut_streams(torch.arange(26), batch_size=1, seq_len=5, what="x", rank=1, world_size=2)
    assert [b.x.tolist() for b in second] == [[[12, 13, 14, 15, 16]], [[17, 18, 19, 20, 21]], [[22, 23]]]
    with pytest.raises(SeqframeError, match=r"too few for data.stateful=true with 32 streams .* lower data.batch_size"):
        cut_streams(torch.arange(20), batch_size=16, seq_len=4, what="the val split", rank=0, world_size=2)

    # through data=text and its loader, decoded: 24 training characters, 2 streams of 11
    from seqframe.data import TextDataModule

    (tmp_path / "abc.txt").write_text("abcdefghijklmnopqrstuvwxABCDEFGHIJKLMNOP")
    data = TextDataModule(
        path=str(tmp_path / "abc.txt"), seq_len=4, batch_size=2, val_fraction=0.2, test_fraction=0.2, stateful=True
    )
    assert data.spec.stateful
    loader = data.train_dataloader()
    batches = list(loader)
    assert all(isinstance(b, StreamBatch) for b in batches)
    decode = data.vocabulary.decode
    assert [[decode(row) for row in b.x] for b in batches] == [["abcd", "lmno"], ["efgh", "pqrs"], ["ijk", "tuv"]]
    assert [[decode(row) for row in b.y] for b in batches] == [["bcde", "mnop"], ["fghi", "qrst"], ["jkl", "uvw"]]
    assert [[decode(r) for r in b.x] for b in loader] == [[decode(r) for r in b.x] for b in batches]  # every epoch
    loader.load_state_dict({"batches": 1})  # a resumed run: the next batch is the second one
    assert [decode(b.x[0]) for b in loader] == ["efgh", "ijk"]


def test_the_carried_state_is_what_lets_a_model_learn_across_batch_boundaries(tmp_path):
    """A window of 3 that starts at a ``.`` cannot know which letter follows without the previous batch's
    state: with data.stateful=true (also in groups of two steps, steps_per_execution=2) the model predicts
    it; without, it cannot (measured: ~0.21 nats per character without, ~0.125 with)."""
    corpus = repeats_corpus(tmp_path / "repeats.txt", blocks=500)
    common = [
        "data=text",
        f"data.path={corpus}",
        "data.seq_len=3",
        "data.batch_size=8",
        "cell=lstm",
        "model.hidden_size=16",
        "model.optimizer.lr=0.01",
        "trainer.max_epochs=2",
        "test=false",
    ]
    stateful = train_in_process(tmp_path / "stateful", [*common, "data.stateful=true", "steps_per_execution=2"])
    windows = train_in_process(tmp_path / "windows", [*common, "data.stateful=false"])
    assert stateful["best_val"] < 0.15, stateful
    assert windows["best_val"] > 0.18, windows


def test_two_ddp_processes_read_their_own_streams_as_one_process_reads_all_of_them(tmp_path):
    """``hardware=ddp_cpu`` with 2 streams per process reads the 4 streams that one process with
    data.batch_size=4 reads: every step the same gradient (the mean of two means over equal counts), so the
    same weights, and the same stateful validation and test over the whole splits, to float rounding.
    Two processes reading the same streams, or carrying each other's state, would drift far apart."""
    corpus = repeats_corpus(tmp_path / "repeats.txt", blocks=100, seed=4)
    common = [*QUIET, "data=text", f"data.path={corpus}", "data.stateful=true", "data.seq_len=8", "cell=gru"]
    common += ["model.hidden_size=12", "model.optimizer._target_=torch.optim.SGD", "model.optimizer.lr=0.5"]
    common += ["trainer.max_epochs=2"]
    run([*common, "hardware=ddp_cpu", "data.batch_size=2", "hydra.run.dir=ddp"], tmp_path)
    run([*common, "data.batch_size=4", "hydra.run.dir=one"], tmp_path)
    ddp, one = summary(tmp_path / "ddp"), summary(tmp_path / "one")
    assert ddp["world_size"] == 2 and ddp["steps"] == one["steps"] == 2 * 45  # 1440 characters: 4 x 359 in 8s
    a, b = (load_checkpoint(tmp_path / run_dir / "checkpoints" / "last.ckpt") for run_dir in ("ddp", "one"))
    for name, tensor in b["state_dict"].items():
        assert torch.allclose(a["state_dict"][name], tensor, atol=1e-5), name
    assert abs(ddp["final_val"] - one["final_val"]) < 1e-5
    assert abs(ddp["test"]["test/loss"] - one["test"]["test/loss"]) < 1e-5


def test_bidirectional_with_stateful_data_is_refused_with_what_to_do():
    from seqframe.harness.model import SequenceModel

    task = {"task": "per_step", "num_outputs": 4, "vocab_size": 4, "monitor": "val/loss", "mode": "min"}
    with pytest.raises(ValueError, match="set model.bidirectional=false, or data.stateful=false"):
        SequenceModel({**task, "stateful": True}, {"name": "gru"}, hidden_size=4, bidirectional=True)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    """A small stateful character model of the repeats corpus, trained for one epoch (a run dir)."""
    folder = tmp_path_factory.mktemp("text_run")
    corpus = repeats_corpus(folder / "repeats.txt", blocks=150, seed=1)
    overrides = ["data=text", f"data.path={corpus}", "data.stateful=true", "data.seq_len=8", "data.batch_size=4"]
    overrides += ["cell=gru", "model.hidden_size=12", "model.num_layers=2", "trainer.max_epochs=1", "test=false"]
    train_in_process(folder / "run", overrides)
    return folder / "run"


def test_generation_steps_from_the_carried_state_as_if_it_reran_the_whole_prefix(text_run):
    from seqframe.data.text import Vocabulary
    from seqframe.runs.generate import TextSampler
    from seqframe.runs.loading import load_run

    trained = load_run(text_run)
    model = trained.model(backend="loop", metrics=False)
    vocabulary = Vocabulary((), itos=trained.data_state["classes"])
    sampler = TextSampler(model, seed=5)
    ids = vocabulary.encode("a.a.b.")
    sampler.feed(ids)  # the prompt once, then one step per token
    for _ in range(30):
        with torch.no_grad():
            whole = model(ids.view(1, -1))[0, -1]
        assert (sampler.logits - whole).abs().max() <= 1e-5
        token = sampler.sample()
        ids = torch.cat([ids, torch.tensor([token])])
        sampler.feed(ids[-1:])


def test_generate_is_deterministic_for_a_seed_and_refuses_unknown_prompts(text_run, capsys):
    from seqframe.runs.generate import generate
    from seqframe.tools.cli import main

    first = generate(str(text_run), prompt="b.b.", length=120, seed=3)
    assert first.startswith("b.b.") and len(first) == 124 and set(first) <= {"a", "b", "."}
    assert generate(str(text_run), prompt="b.b.", length=120, seed=3) == first
    assert generate(str(text_run), prompt="b.b.", length=120, seed=4) != first  # ~10 random letters differ
    greedy = generate(str(text_run), prompt="b.", length=8, temperature=0)
    assert greedy == generate(str(text_run), prompt="b.", length=8, temperature=0, seed=9)  # no sampling at T=0

    assert main(["generate", str(text_run), "--prompt", "a.", "--length", "6", "--seed", "3", "--top-k", "2"]) == 0
    assert capsys.readouterr().out.startswith("a.")
    assert main(["generate", str(text_run), "--prompt", "xyz"]) == 2
    assert "tokens the model never saw in training: ['x', 'y', 'z']" in capsys.readouterr().err


def test_generation_reads_the_end_of_a_training_paragraph_before_the_prompt(text_run, capsys):
    """The run saves up to 200 training tokens that end with the last paragraph break; generate reads them,
    unprinted, before the prompt (greedy decoding shows it: the same as feeding warm-up + prompt by hand)."""
    from seqframe.data.text import Vocabulary, warmup_text
    from seqframe.runs.generate import TextSampler, generate, primed
    from seqframe.runs.loading import load_run
    from seqframe.tools.cli import main

    assert warmup_text(list("ab\n\ncd\n\nef"), "char") == "ab\n\ncd\n\n"
    assert warmup_text(list("xyzab\n\ncd"), "char", size=4) == "ab\n\n"
    assert warmup_text(["to", "be", "\n", "\n", "or"], "word") == "to be \n \n"
    assert warmup_text(list("no break"), "char", size=3) == "eak"

    trained = load_run(text_run)
    warmup = trained.data_state["warmup"]
    assert len(warmup) == 200 and set(warmup) <= {"a", "b", "."}  # the repeats corpus has no paragraphs
    vocabulary = Vocabulary((), itos=trained.data_state["classes"])

    def state_after(text: str):
        sampler = TextSampler(trained.model(backend="loop", metrics=False))
        sampler.feed(vocabulary.encode(text))
        return sampler.state

    warm, tokens = primed(trained, "ab")
    assert tokens == ["a", "b"] and torch.equal(warm.state, state_after(warmup + "ab"))
    cold, _ = primed(trained, "ab", warmup=False)
    assert torch.equal(cold.state, state_after("ab")) and (cold.state - warm.state).abs().max() > 1e-3
    alone, tokens = primed(trained, None)  # no prompt: the warm-up alone, and only the continuation printed
    assert tokens == [] and torch.equal(alone.state, state_after(warmup))
    assert len(generate(str(text_run), length=12)) == 12
    cold_text = generate(str(text_run), prompt="ab", length=6, seed=5, warmup=False)
    assert main(["generate", str(text_run), "--prompt", "ab", "--length", "6", "--seed", "5", "--no-warmup"]) == 0
    assert capsys.readouterr().out == cold_text + "\n"


STREAM_EXPORTED = """
import numpy as np
pt2, onnx, inputs, out, whole_onnx = sys.argv[1:6]
tokens = np.load(inputs)  # [batch, T] token ids
import torch
program = torch.export.load(pt2).module()
import json
shapes = json.load(open(pt2 + ".json"))["inputs"]
parts = [name for name in shapes if name.startswith("state_")]
layers, size = (int(v) for v in shapes[parts[0]].split("[")[1].rstrip("]").split(", ")[::2])
state = tuple(torch.zeros(layers, len(tokens), size) for _ in parts)
streamed = []
for t in range(tokens.shape[1]):
    output, state = program(torch.from_numpy(tokens[:, t]), state)
    streamed.append(output.detach().numpy())
import onnxruntime
session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
names = [i.name for i in session.get_inputs()]
assert names == ["x", *parts], names
state = [np.zeros((layers, len(tokens), size), np.float32) for _ in parts]
onnx_streamed = []
for t in range(tokens.shape[1]):
    output, *state = session.run(None, {"x": tokens[:, t], **dict(zip(parts, state))})
    onnx_streamed.append(output)
whole = onnxruntime.InferenceSession(whole_onnx, providers=["CPUExecutionProvider"])
lengths = np.full(len(tokens), tokens.shape[1], dtype=np.int64)
at_once = whole.run(None, {"x": tokens, "lengths": lengths})[0]  # the whole-sequence export: any length
np.savez(out, pt2=np.stack(streamed, 1), onnx=np.stack(onnx_streamed, 1), whole=at_once)
"""


def test_the_step_export_streams_token_by_token_beyond_any_training_window(text_run, tmp_path):
    """pt2 and ONNX step models, run one token at a time without seqframe over 3 training windows and
    more: each step's probabilities are the whole-sequence model's to 1e-5; and so are those of the
    whole-sequence ONNX export, whose time size is free (a loop in the graph)."""
    import json

    from seqframe.runs.deployable import Deployable
    from seqframe.runs.export import export
    from seqframe.runs.loading import load_run

    pt2 = export(str(text_run), "pt2", step=True)
    onnx = export(str(text_run), "onnx", step=True)
    info = json.loads(Path(str(onnx) + ".json").read_text())
    assert info["mode"] == "step" and info["initial_state"] == "zeros"
    assert info["inputs"]["state_0"] == "float32 [2, batch, 12]" and "state_1" not in info["inputs"]  # GRU: h only
    tokens = torch.randint(1, 4, (3, 3 * 8 + 5))  # a batch of 3 streams, 29 steps; training windows had 8
    np.save(tmp_path / "tokens.npy", tokens.numpy())
    whole_onnx = export(str(text_run), "onnx", out=str(tmp_path / "whole.onnx"))  # no --step: any length too
    assert json.loads(Path(str(whole_onnx) + ".json").read_text())["max_len"] is None
    paths = [str(pt2), str(onnx), str(tmp_path / "tokens.npy"), str(tmp_path / "out.npz"), str(whole_onnx)]
    run_without_seqframe(STREAM_EXPORTED, tmp_path, *paths)
    streamed = np.load(tmp_path / "out.npz")
    trained = load_run(text_run)
    with torch.no_grad():
        whole = Deployable(trained.model(metrics=False), trained.data_state)(tokens, torch.full((3,), 29)).numpy()
    assert np.abs(streamed["pt2"] - whole).max() <= 1e-5
    assert np.abs(streamed["onnx"] - whole).max() <= 1e-5
    assert np.abs(streamed["whole"] - whole).max() <= 1e-5


STEPS = 69  # per epoch: 3040 characters, 2736 for training, 4 streams of 683, chunks of 10
RESUME = [
    "data=text",
    "data.stateful=true",
    "data.seq_len=10",
    "data.batch_size=4",
    "cell=lstm",
    "model.num_layers=2",
    "model.dropout=0.3",
    "model.hidden_size=16",
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "callbacks.step_checkpoint.every_n_train_steps=7",  # never a multiple of STEPS: mid-epoch
    "test=false",
]


def test_kill_9_mid_epoch_resumes_bit_exact_with_the_carried_state(tmp_path):
    corpus = repeats_corpus(tmp_path / "repeats.txt", blocks=190, seed=2)
    args = [*RESUME, f"data.path={corpus}"]
    reference = train_in_process(tmp_path / "reference", args)
    assert reference["steps"] == 2 * STEPS

    last = tmp_path / "broken" / "checkpoints" / "last.ckpt"
    process = start([*QUIET, *args, "hydra.run.dir=broken"], tmp_path, "kill.log")
    wait_for_new_checkpoint(last, process, tmp_path / "kill.log")
    kill_group(process)
    killed_at = load_checkpoint(last)
    assert killed_at["global_step"] % STEPS, "the checkpoint must be mid-epoch"
    carried = killed_at["callbacks"]["ResumeState"]["carried"]
    assert len(carried) == 1 and [tuple(part.shape) for part in carried[0]] == [(2, 4, 16), (2, 4, 16)]

    resumed = train_in_process(tmp_path / "broken", [*args, "ckpt_path=last"])
    assert resumed["resumed_from"] == str(last)
    a, b = load_checkpoint(last), load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 2 * STEPS
    for name, tensor in b["state_dict"].items():
        assert torch.equal(a["state_dict"][name], tensor), f"{name} differs after resume"
    assert resumed["final_val"] == reference["final_val"]
