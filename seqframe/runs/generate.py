"""``seqframe generate RUN [--prompt TEXT] [--length N] [--temperature T] [--top-k K] [--seed S]``.

Samples a continuation from a trained text model (``data=text``): the prompt
runs through the model once, then each new token costs one step of the
recurrence from the carried state, O(1) per token however long the text
grows (a Transformer re-reads its context; a recurrent model need not). The
same seed gives the same text. Tokens are drawn from the softmax of the
logits divided by ``temperature`` (0: always the most likely token), among
the ``top_k`` most likely (all when None); the unknown-token placeholder
(id 0) is never drawn. Before the prompt the model reads, unprinted, the end of
a paragraph of its training text (``warmup`` in the run's data state;
``--no-warmup`` starts from the initial state instead), so the prompt starts a
paragraph rather than being read from a state the model rarely saw.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor

from seqframe.data.text import UNKNOWN, Vocabulary, tokenize
from seqframe.errors import SeqframeError

DEFAULT_LENGTH = 200


class TextSampler:
    """A trained text model and its carried state: :meth:`feed` reads tokens, :meth:`sample` draws the next.

    ``model`` is a :class:`~seqframe.harness.model.SequenceModel` of a per-step token task, in eval mode."""

    def __init__(self, model, seed: int = 0) -> None:
        if model.spec.vocab_size is None or model.spec.task != "per_step":
            raise SeqframeError("seqframe generate needs a language model (trained with data=text)")
        if model.rnn.num_directions != 1:
            raise SeqframeError(
                "seqframe generate needs a model that reads forward only; this run is bidirectional "
                "(train with model.bidirectional=false to generate)"
            )
        self.model = model
        self.state = None
        self.logits: Optional[Tensor] = None  # the next token's logits [vocab], after the last fed token
        self.generator = torch.Generator().manual_seed(int(seed))

    @torch.no_grad()
    def feed(self, ids: Tensor) -> Tensor:
        """Run ``ids`` ``[T]`` from the carried state; returns the logits ``[T, vocab]`` at each of them."""
        out, self.state = self.model.forward_with_state(ids.view(1, -1), self.state)
        self.logits = out[0, -1]
        return out[0]

    def sample(self, temperature: float = 1.0, top_k: Optional[int] = None) -> int:
        """The next token, drawn from the logits after the last fed token (not fed itself)."""
        if self.logits is None:
            raise SeqframeError("feed the model a prompt before sampling")
        logits = self.logits.clone()
        logits[0] = -float("inf")  # the unknown-token placeholder stands for no token in particular
        if temperature == 0:
            return int(logits.argmax())
        if top_k is not None and top_k < len(logits):
            kept = logits.topk(top_k).values[-1]
            logits = logits.masked_fill(logits < kept, -float("inf"))
        probabilities = torch.softmax(logits / temperature, dim=-1)
        return int(torch.multinomial(probabilities, 1, generator=self.generator))

    def continue_for(self, length: int, temperature: float = 1.0, top_k: Optional[int] = None) -> List[int]:
        """``length`` new tokens, each sampled then fed back: one recurrence step per token."""
        tokens: List[int] = []
        for _ in range(length):
            tokens.append(self.sample(temperature, top_k))
            self.feed(torch.tensor(tokens[-1:]))
        return tokens


def detokenize(tokens: List[str], kind: str) -> str:
    """Tokens back to text: characters joined; words with a space between, none next to newlines or before
    punctuation."""
    if kind == "char":
        return "".join(tokens)
    text = ""
    for token in tokens:
        glue = not text or text.endswith("\n") or token == "\n" or not (token[0].isalnum() or token[0] == "_")
        text += token if glue else " " + token
    return text


def check_options(length: int, temperature: float, top_k: Optional[int]) -> None:
    """Refuse sampling options that mean nothing, saying what works."""
    if length < 0:
        raise SeqframeError(f"--length {length}: give the number of tokens to generate (0 or more)")
    if not temperature >= 0:
        raise SeqframeError(f"--temperature {temperature}: give 0 (always the likeliest token) or more (1: as trained)")
    if top_k is not None and top_k < 1:
        raise SeqframeError(f"--top-k {top_k}: give 1 or more (or leave it out to sample from every token)")


def primed(trained, prompt: Optional[str], seed: int = 0, warmup: bool = True) -> tuple[TextSampler, List[str]]:
    """A sampler of ``trained`` (a loaded run) that has read the warm-up text (unless ``warmup`` is False)
    and the prompt, and the prompt's tokens."""
    state = trained.data_state or {}
    if state.get("format") != "text":
        raise SeqframeError(f"{trained.checkpoint}: seqframe generate needs a model trained on text (data=text)")
    vocabulary, kind = Vocabulary((), itos=state["classes"]), state.get("tokens", "char")
    primer = tokenize(state.get("warmup") or "", kind) if warmup else []
    if prompt is None and not primer:  # start as after a line break (or from the vocabulary's first token)
        prompt = "\n" if "\n" in vocabulary.stoi else vocabulary.itos[1]
    tokens = tokenize(prompt or "", kind)
    if prompt is not None and not tokens:
        raise SeqframeError("--prompt has no tokens the model reads; give some text (or leave --prompt out)")
    unknown = sorted({t for t in tokens if t not in vocabulary.stoi})
    if unknown:
        raise SeqframeError(
            f"--prompt has tokens the model never saw in training: {unknown[:10]} (they would all read as "
            f"{UNKNOWN!r}); use only tokens of the training text"
        )
    sampler = TextSampler(trained.model(backend="loop", metrics=False), seed)
    sampler.feed(vocabulary.encode(primer + tokens))
    return sampler, tokens


def generate(
    run: str,
    prompt: Optional[str] = None,
    length: int = DEFAULT_LENGTH,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    seed: int = 0,
    warmup: bool = True,
) -> str:
    """The prompt and its continuation of ``length`` tokens sampled from ``run``'s best model
    (after the run's warm-up text, unless ``warmup`` is False)."""
    from seqframe.runs.loading import load_run

    check_options(length, temperature, top_k)
    trained = load_run(run)
    sampler, tokens = primed(trained, prompt, seed, warmup)
    new = sampler.continue_for(length, temperature, top_k)
    itos = trained.data_state["classes"]
    return detokenize(tokens + [itos[i] for i in new], trained.data_state.get("tokens", "char"))
