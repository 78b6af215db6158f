"""Language modelling over any text file (``data=text data.path=...``), by characters or words.

``tokens=char`` reads every character; ``tokens=word`` reads words and
punctuation marks (``\\w+`` runs and single other characters; newlines are
kept as tokens, other white space only separates). The vocabulary comes from
the training split and is saved with the model (``data_state``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from seqframe.data.base import SPLITS, TaskDataModule, TaskSpec
from seqframe.data.files import DataFileError, SequenceList, SequenceListPerStep, Sequences
from seqframe.data.streams import StatefulSplits, cut_streams

UNKNOWN = "\ufffd"  # id 0: tokens of val/test (or new files) that training never saw
TOKENS = ("char", "word")
WORD = re.compile(r"\w+|\n|[^\w\s]")


def tokenize(text: str, tokens: str = "char") -> List[str]:
    """``char``: every character; ``word``: words, punctuation marks and newlines."""
    return list(text) if tokens == "char" else WORD.findall(text)


class Vocabulary:
    """Tokens of the training split, sorted (or a saved list); id 0 stands for any unseen token."""

    def __init__(self, tokens: Iterable[str], itos: Optional[List[str]] = None) -> None:
        self.itos: List[str] = list(itos) if itos is not None else [UNKNOWN] + sorted(set(tokens) - {UNKNOWN})
        self.stoi: Dict[str, int] = {token: i for i, token in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Iterable[str]) -> Tensor:
        return torch.tensor([self.stoi.get(token, 0) for token in tokens], dtype=torch.long)

    def decode(self, ids, separator: str = "") -> str:
        return separator.join(self.itos[int(i)] for i in ids)


CharVocabulary = Vocabulary  # a str iterates over its characters


def windows(ids: Tensor, seq_len: int) -> Tuple[Tensor, Tensor]:
    """Non-overlapping windows: inputs ``ids[t : t+T]``, targets shifted by one."""
    count = (len(ids) - 1) // seq_len
    x = ids[: count * seq_len].view(count, seq_len)
    y = ids[1 : count * seq_len + 1].view(count, seq_len)
    return x, y


WARMUP_TOKENS = 200


def warmup_text(tokens: Sequence[str], kind: str, size: int = WARMUP_TOKENS) -> str:
    """Up to ``size`` tokens of the training text that end with its last paragraph break (its end when it
    has none), as text. A model trained statefully met the zero state only where its streams began,
    mid-text, so a prompt read from it starts with nonsense; read after this, the prompt is read as the
    start of a new paragraph of the kind of text the model knows."""
    end = len(tokens)
    for i in range(len(tokens) - 1, 0, -1):
        if tokens[i] == tokens[i - 1] == "\n":
            end = i + 1
            break
    kept = list(tokens[max(0, end - size) : end])
    return "".join(kept) if kind == "char" else " ".join(kept)


def unigram_entropy_bits(text: Sequence[str]) -> float:
    """Bits per token of the best predictor that ignores context (the baseline)."""
    counts = Counter(text)
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


class TextDataModule(StatefulSplits, TaskDataModule):
    """Next-token prediction. The file's tokens are split by position: the first
    ``1 - val_fraction - test_fraction`` for training (which fixes the
    vocabulary), then validation, then test; each cut into windows of ``seq_len``
    (the last ``< seq_len`` tokens of a split make no window: counted in ``report``).
    ``bpc`` is bits per token (per word with ``tokens=word``).

    ``stateful=True``: each split is read in order as ``batch_size`` contiguous streams per process
    (:mod:`seqframe.data.streams`), and the model carries its state from one batch to the next
    (truncated BPTT over ``seq_len`` steps); ``shuffle`` does not apply."""

    def __init__(
        self,
        path: Optional[str] = None,
        seq_len: int = 100,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        max_chars: Optional[int] = None,
        batch_size: int = 32,
        seed: int = 0,
        shuffle: bool = True,
        tokens: str = "char",
        stateful: bool = False,
        data_state: Optional[Dict[str, Any]] = None,
    ):
        super().__init__(batch_size=batch_size, seed=seed, shuffle=shuffle)
        if tokens not in TOKENS:
            raise ValueError(f"data.tokens={tokens!r} is not valid; choose char or word")
        self.tokens = tokens
        if not path:
            raise ValueError("data=text needs a file: add data.path=/path/to/corpus.txt to the command")
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"data.path={path!r}: no such file (relative paths start at the current directory)")
        if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ValueError("data.val_fraction and data.test_fraction must be in (0, 1) and sum to less than 1")
        self.seq_len = int(seq_len)
        self.stateful = bool(stateful)
        text = self.path.read_text(encoding="utf-8", errors="replace")
        text = tokenize(text[:max_chars] if max_chars else text, tokens)
        n = len(text)
        cut_val, cut_test = int(n * (1 - val_fraction - test_fraction)), int(n * (1 - test_fraction))
        self.texts = {"train": text[:cut_val], "val": text[cut_val:cut_test], "test": text[cut_test:]}
        for split in SPLITS:
            if len(self.texts[split]) <= self.seq_len:
                raise ValueError(
                    f"{self.path}: the {split} split has {len(self.texts[split])} {tokens} tokens, not more than "
                    f"data.seq_len={self.seq_len}; use a longer file, a smaller seq_len or larger fractions"
                )
        self.warmup = warmup_text(self.texts["train"], tokens)  # what generate reads before a prompt
        saved = (data_state or {}).get("classes")
        self.vocabulary = Vocabulary(self.texts["train"], itos=saved)
        # stateful: at most batch_size tokens per split (those after the streams' equal lengths)
        tail = (lambda n: (n - 1) % self.batch_size) if self.stateful else (lambda n: (n - 1) % self.seq_len)
        self.report = {"unused_tail_tokens": {s: tail(len(t)) for s, t in self.texts.items()}}

    @property
    def spec(self) -> TaskSpec:
        bits = unigram_entropy_bits(self.texts["train"])
        return TaskSpec(
            task="per_step",
            num_outputs=len(self.vocabulary),
            vocab_size=len(self.vocabulary),
            monitor="val/loss",
            mode="min",
            baseline={"bpc": bits, "loss": bits * math.log(2)},
            stateful=self.stateful,
        )

    def build(self, split: str) -> Dataset:
        ids = self.vocabulary.encode(self.texts[split])
        if self.stateful:  # built when the loaders are, so the final batch size and DDP ranks are known
            return cut_streams(ids, self.batch_size, self.seq_len, f"{self.path}: the {split} split")
        return TensorDataset(*windows(ids, self.seq_len))

    @property
    def data_state(self) -> Dict[str, Any]:
        """The vocabulary (``classes``: id -> token) and tokenisation, saved with the model; ``warmup``:
        the text ``seqframe generate`` reads before a prompt (:func:`warmup_text`)."""
        return {
            "format": "text",
            "tokens": self.tokens,
            "classes": self.vocabulary.itos,
            "max_len": self.seq_len,
            "warmup": self.warmup,
        }

    def read_new(self, path: str | Path, with_targets: bool) -> Tuple[Sequences, Dataset]:
        """Every token of a new file, in windows of ``seq_len`` (the last one shorter): with
        targets, the next token of each position (the file's last token has none, so it is no input)."""
        resolved = Path(path).expanduser()
        if not resolved.is_file() or resolved.stat().st_size == 0:
            raise DataFileError(f"{path}: no such file or an empty one; give a UTF-8 text file")
        ids = self.vocabulary.encode(tokenize(resolved.read_text(encoding="utf-8", errors="replace"), self.tokens))
        inputs = ids[:-1] if with_targets else ids
        if len(inputs) == 0:
            raise DataFileError(f"{path}: fewer than 2 tokens; give a longer text")
        starts = range(0, len(inputs), self.seq_len)
        xs = [inputs[i : i + self.seq_len] for i in starts]
        names = [f"tokens {i}-{i + len(x) - 1}" for i, x in zip(starts, xs)]
        seqs = Sequences([x.numpy() for x in xs], None, list(starts), names, [])
        if not with_targets:
            return seqs, SequenceList(xs, None)
        return seqs, SequenceListPerStep(xs, [ids[i + 1 : i + 1 + len(x)] for i, x in zip(starts, xs)])
