"""Character-level language modelling over any text file (``data=text data.path=...``)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from seqframe.data.base import SPLITS, TaskDataModule, TaskSpec

UNKNOWN = "\ufffd"  # id 0: characters of val/test that training never saw


class CharVocabulary:
    """Characters of the training split, sorted; id 0 stands for any unseen character."""

    def __init__(self, text: str) -> None:
        self.itos: List[str] = [UNKNOWN] + sorted(set(text) - {UNKNOWN})
        self.stoi: Dict[str, int] = {ch: i for i, ch in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> Tensor:
        return torch.tensor([self.stoi.get(ch, 0) for ch in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


def windows(ids: Tensor, seq_len: int) -> Tuple[Tensor, Tensor]:
    """Non-overlapping windows: inputs ``ids[t : t+T]``, targets shifted by one."""
    count = (len(ids) - 1) // seq_len
    x = ids[: count * seq_len].view(count, seq_len)
    y = ids[1 : count * seq_len + 1].view(count, seq_len)
    return x, y


def unigram_entropy_bits(text: str) -> float:
    """Bits per character of the best predictor that ignores context (the baseline)."""
    counts = Counter(text)
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


class TextDataModule(TaskDataModule):
    """Next-character prediction. The file is split by position: the first
    ``1 - val_fraction - test_fraction`` for training (which fixes the
    vocabulary), then validation, then test; each cut into windows of ``seq_len``."""

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
    ):
        super().__init__(batch_size=batch_size, seed=seed, shuffle=shuffle)
        if not path:
            raise ValueError("data=text needs a file: add data.path=/path/to/corpus.txt to the command")
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"data.path={path!r}: no such file (relative paths start at the current directory)")
        if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise ValueError("data.val_fraction and data.test_fraction must be in (0, 1) and sum to less than 1")
        self.seq_len = int(seq_len)
        text = self.path.read_text(encoding="utf-8", errors="replace")
        text = text[:max_chars] if max_chars else text
        n = len(text)
        cut_val, cut_test = int(n * (1 - val_fraction - test_fraction)), int(n * (1 - test_fraction))
        self.texts = {"train": text[:cut_val], "val": text[cut_val:cut_test], "test": text[cut_test:]}
        for split in SPLITS:
            if len(self.texts[split]) <= self.seq_len:
                raise ValueError(
                    f"{self.path}: the {split} split has {len(self.texts[split])} characters, not more than "
                    f"data.seq_len={self.seq_len}; use a longer file, a smaller seq_len or larger fractions"
                )
        self.vocabulary = CharVocabulary(self.texts["train"])

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
        )

    def build(self, split: str) -> Dataset:
        return TensorDataset(*windows(self.vocabulary.encode(self.texts[split]), self.seq_len))
