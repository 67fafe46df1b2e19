"""An independent reference for the jina-embeddings-v3 math, checked against `Embedder`.

The reference below is written from the released checkpoint's published format and math
only (a post-norm XLM-RoBERTa encoder with rotary positions, no absolute position
embeddings, and per-task LoRA with scale lora_alpha / lora_rank): it reads
model.safetensors with `safetensors.torch.load_file`, merges each task's LoRA weights
explicitly, and runs a plain per-sequence post-norm BERT forward in float64 (rotary
angles in float32, as the facts say). It imports nothing from embedder_core's model code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer

from embedder_core import Embedder, LateChunkingOptions

COSINE_MATCH = 0.99999
# float32 vs this float64 reference differ by ~1e-7 per value on the tiny model, while a
# near miss such as tanh-approximate GELU shows up at ~4e-5: cosine alone cannot see it.
VALUE_TOLERANCE = 2e-6

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Everyone has the right to life, liberty and security of person.",
    "人人生而自由，在尊严和权利上一律平等。",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Все люди рождаются свободными.",
    "A",
]


class ReferenceJina:
    """Plain float64 jina-embeddings-v3 forward, one sequence at a time."""

    EMBEDDINGS = ("roberta.embeddings.word_embeddings", "roberta.embeddings.token_type_embeddings")

    def __init__(self, model_dir: Path) -> None:
        self.config = json.loads((model_dir / "config.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.raw = {
            name: tensor.to(torch.float64)
            for name, tensor in load_file(model_dir / "model.safetensors").items()
        }
        self.tasks: list[str] = self.config["lora_adaptations"]
        self.max_tokens = self.config["max_position_embeddings"] - 2
        self._merged: dict[str | None, dict[str, torch.Tensor]] = {}

    def weights(self, task: str | None) -> dict[str, torch.Tensor]:
        """Plain weights for `task`: W + s*B[t]@A[t] (Linear), W + s*A[t]@B[t] (Embedding)."""
        if task in self._merged:
            return self._merged[task]
        scale = self.config["lora_alpha"] / self.config["lora_rank"]
        suffix = ".parametrizations.weight.original"
        merged: dict[str, torch.Tensor] = {}
        for name, tensor in self.raw.items():
            if name.endswith(suffix):
                module = name[: -len(suffix)]
                lora_a = self.raw[f"{module}.parametrizations.weight.0.lora_A"]
                lora_b = self.raw[f"{module}.parametrizations.weight.0.lora_B"]
                weight = tensor.clone()
                if task is not None:
                    t = self.tasks.index(task)
                    if module in self.EMBEDDINGS:
                        weight += scale * (lora_a[t] @ lora_b[t])
                    else:
                        weight += scale * (lora_b[t] @ lora_a[t])
                merged[f"{module}.weight"] = weight
            elif ".parametrizations." not in name:
                merged[name] = tensor
        self._merged[task] = merged
        return merged

    def instruction(self, task: str | None) -> str:
        return "" if task is None else self.config["task_instructions"][task]

    def content_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def token_ids(self, text: str, task: str | None, *, with_instruction: bool = True) -> list[int]:
        """`<s> instruction+text </s>`, content truncated so the whole fits max_tokens."""
        prefixed = (self.instruction(task) if with_instruction else "") + text
        ids = self.tokenizer.encode(prefixed, add_special_tokens=True).ids
        if len(ids) > self.max_tokens:
            ids = [*ids[: self.max_tokens - 1], ids[-1]]
        return ids

    def token_states(self, ids: list[int], task: str | None) -> torch.Tensor:
        cfg, w = self.config, self.weights(task)
        eps = cfg["layer_norm_eps"]
        hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
        head_dim = hidden // heads
        length = len(ids)

        def layer_norm(x: torch.Tensor, module: str) -> torch.Tensor:
            return F.layer_norm(x, (hidden,), w[f"{module}.weight"], w[f"{module}.bias"], eps)

        def linear(x: torch.Tensor, module: str) -> torch.Tensor:
            return x @ w[f"{module}.weight"].T + w[f"{module}.bias"]

        x = w["roberta.embeddings.word_embeddings.weight"][torch.tensor(ids)]
        x = x + w["roberta.embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, "roberta.emb_ln")

        exponents = torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim
        inv_freq = 1.0 / (float(cfg["rotary_emb_base"]) ** exponents)
        angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
        angles = torch.cat([angles, angles], dim=-1).to(torch.float64)  # (L, head_dim)
        cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]

        def rotate(x: torch.Tensor) -> torch.Tensor:  # (L, heads, head_dim), rotate-half
            first, second = x[..., : head_dim // 2], x[..., head_dim // 2 :]
            return x * cos + torch.cat([-second, first], dim=-1) * sin

        for i in range(cfg["num_hidden_layers"]):
            layer = f"roberta.encoder.layers.{i}"
            qkv = linear(x, f"{layer}.mixer.Wqkv").view(length, 3, heads, head_dim)
            q, k, v = rotate(qkv[:, 0]), rotate(qkv[:, 1]), qkv[:, 2]
            scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(head_dim)
            attended = torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), v)
            attn = linear(attended.reshape(length, hidden), f"{layer}.mixer.out_proj")
            x = layer_norm(x + attn, f"{layer}.norm1")
            inner = F.gelu(linear(x, f"{layer}.mlp.fc1"), approximate="none")
            x = layer_norm(x + linear(inner, f"{layer}.mlp.fc2"), f"{layer}.norm2")
        return x

    def encode(self, text: str, task: str | None, *, with_instruction: bool = True) -> np.ndarray:
        ids = self.token_ids(text, task, with_instruction=with_instruction)
        return _unit(self.token_states(ids, task).mean(dim=0).numpy())

    # --- late chunking: one document, states of its content tokens ---------------------

    def content_states(
        self, content: list[int], task: str | None, windows: list[tuple[int, int]]
    ) -> torch.Tensor:
        """State of each content token, from the one window [start, end) that holds it;
        each window is encoded as `<s> instruction content[start:end] </s>`. Tokens in no
        window are NaN, so pooling them shows up."""
        bos, eos = self.config["bos_token_id"], self.config["eos_token_id"]
        instruction = self.instruction(task)
        head = [bos, *(self.content_ids(instruction) if instruction else [])]
        states = torch.full((len(content), self.config["hidden_size"]), math.nan)
        for start, end in windows:
            ids = [*head, *content[start:end], eos]
            assert len(ids) <= self.max_tokens, (start, end)
            states[start:end] = self.token_states(ids, task)[len(head) : len(head) + end - start]
        return states

    def piece_tokens(self, pieces: list[str]) -> tuple[list[int], list[tuple[int, int]]]:
        """Pieces tokenized one by one without specials, joined; each piece's token span."""
        content: list[int] = []
        spans = []
        for piece in pieces:
            piece_ids = self.content_ids(piece)
            spans.append((len(content), len(content) + len(piece_ids)))
            content += piece_ids
        return content, spans

    def late_chunks(
        self, pieces: list[str], task: str | None, windows: list[tuple[int, int]] | None = None
    ) -> dict[int, np.ndarray]:
        """Each piece's row: the mean of the states of its own tokens (no `<s>`, `</s>`).
        By default one window holds the whole document; with `windows`, only the pieces
        that lie wholly inside them get a row."""
        content, spans = self.piece_tokens(pieces)
        windows = windows or [(0, len(content))]
        states = self.content_states(content, task, windows)
        return {
            i: _unit(states[a:b].mean(dim=0).numpy())
            for i, (a, b) in enumerate(spans)
            if any(start <= a and b <= end for start, end in windows)
        }

    def late_spans(
        self,
        document: str,
        spans: list[tuple[int, int]],
        task: str | None,
        windows: list[tuple[int, int]] | None = None,
    ) -> np.ndarray:
        """The document tokenized once; each character span pools the tokens whose
        characters overlap it."""
        encoding = self.tokenizer.encode(document, add_special_tokens=False)
        windows = windows or [(0, len(encoding.ids))]
        states = self.content_states(encoding.ids, task, windows)
        rows = []
        for start, end in spans:
            inside = [
                i
                for i, (token_start, token_end) in enumerate(encoding.offsets)
                if token_start < end and token_end > start
            ]
            assert inside, (start, end)
            rows.append(_unit(states[inside].mean(dim=0).numpy()))
        return np.stack(rows)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def assert_matches(got: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_array_less(COSINE_MATCH, _cosines(got, expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=VALUE_TOLERANCE)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(axis=-1)


@pytest.fixture(scope="module")
def reference(tiny_jina_dir: Path) -> ReferenceJina:
    return ReferenceJina(tiny_jina_dir)


@pytest.fixture(scope="module")
def embedder(tiny_jina_embedder: Embedder) -> Embedder:
    return tiny_jina_embedder


ALL_TASKS = [
    None,
    "retrieval.query",
    "retrieval.passage",
    "separation",
    "classification",
    "text-matching",
]


def test_reference_tasks_are_the_released_ones(reference: ReferenceJina, embedder: Embedder):
    assert tuple(reference.tasks) == tuple(t for t in ALL_TASKS if t)
    assert tuple(embedder.tasks) == tuple(reference.tasks)
    assert embedder.has_adapters
    assert embedder.dimension == reference.config["hidden_size"]
    assert embedder.max_tokens == reference.max_tokens
    assert embedder.device == torch.device("cpu") and embedder.dtype == torch.float32


def test_bfloat16_stays_close_to_reference(reference: ReferenceJina, tiny_jina_dir: Path):
    embedder = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu", dtype=torch.bfloat16)
    assert embedder.dtype == torch.bfloat16
    got = embedder.encode(TEXTS, task="retrieval.query")
    assert got.dtype == np.float32
    expected = np.stack([reference.encode(text, "retrieval.query") for text in TEXTS])
    np.testing.assert_array_less(0.99, _cosines(got, expected))


@pytest.mark.parametrize("task", ALL_TASKS)
def test_encode_matches_reference(reference: ReferenceJina, embedder: Embedder, task):
    got = embedder.encode(TEXTS, task=task)
    assert got.dtype == np.float32
    assert got.shape == (len(TEXTS), reference.config["hidden_size"])
    expected = np.stack([reference.encode(text, task) for text in TEXTS])
    assert_matches(got, expected)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("task", ["retrieval.passage", "text-matching"])
def test_truncation_matches_reference(reference: ReferenceJina, embedder: Embedder, task):
    """Over-limit input keeps its first tokens and still ends with `</s>`."""
    long_text = " ".join(TEXTS * 20)
    ids = reference.token_ids(long_text, task)
    assert len(ids) == reference.max_tokens  # the text really was cut
    assert embedder.count_tokens([long_text], task=task)[0] > reference.max_tokens
    got = embedder.encode(long_text, task=task)
    assert_matches(got[0], reference.encode(long_text, task))


def test_tasks_give_different_embeddings(reference: ReferenceJina, embedder: Embedder):
    """Each adapter moves the embedding: this fails if adapters are ignored."""
    by_task = {task: embedder.encode(TEXTS, task=task) for task in ALL_TASKS}
    for i, first in enumerate(ALL_TASKS):
        for second in ALL_TASKS[i + 1 :]:
            cosines = _cosines(by_task[first], by_task[second])
            assert cosines.max() < 0.999, (first, second, cosines)
    # Same contrast in the reference: the fixture's LoRA weights are large enough.
    separation = reference.encode(TEXTS[0], "separation")
    classification = reference.encode(TEXTS[0], "classification")
    assert _cosines(separation, classification) < 0.999


@pytest.mark.parametrize("task", ["retrieval.query", "retrieval.passage"])
def test_instruction_is_prepended(reference: ReferenceJina, embedder: Embedder, task):
    instruction = reference.instruction(task)
    assert instruction
    got = embedder.encode(TEXTS, task=task)
    with_instruction = np.stack([reference.encode(t, task) for t in TEXTS])
    without = np.stack([reference.encode(t, task, with_instruction=False) for t in TEXTS])
    assert_matches(got, with_instruction)
    assert _cosines(got, without).max() < 0.9999
    counts = embedder.count_tokens(TEXTS, task=task)
    assert counts == [len(reference.token_ids(t, task)) for t in TEXTS]
    assert counts != embedder.count_tokens(TEXTS, task="separation")


def test_mixed_task_batch_matches_reference(reference: ReferenceJina, embedder: Embedder):
    tasks = [ALL_TASKS[i % len(ALL_TASKS)] for i in range(len(TEXTS))]
    got = embedder.encode(TEXTS, task=tasks)
    expected = np.stack([reference.encode(t, task) for t, task in zip(TEXTS, tasks)])
    assert_matches(got, expected)


PIECES = [
    "The President spoke to Congress about the economy.",
    "Taxes, schools and health care were the main themes.",
    "人人生而自由。",
    "He ended with the armed forces.",
]


@pytest.mark.parametrize("task", ["retrieval.passage", "text-matching", None])
def test_late_chunking_matches_reference(reference: ReferenceJina, embedder: Embedder, task):
    got = embedder.encode(PIECES, task=task, late_chunking=True)
    assert got.shape == (len(PIECES), reference.config["hidden_size"])
    expected = reference.late_chunks(PIECES, task)
    assert_matches(got, np.stack([expected[i] for i in range(len(PIECES))]))
    # Context matters: each piece differs from encoding it on its own.
    alone = embedder.encode(PIECES, task=task)
    assert _cosines(got, alone).max() < 0.9999


DOCUMENT = (
    "The President spoke to Congress about the economy. 人人生而自由，在尊严和权利上一律平等。"
    "Taxes, schools and health care were the main themes! He ended with the armed forces."
)


@pytest.mark.parametrize("task", ["retrieval.passage", None])
def test_embed_spans_matches_reference(reference: ReferenceJina, embedder: Embedder, task):
    first_end = DOCUMENT.index(".") + 1
    cjk_end = DOCUMENT.index("。") + 1
    spans = [
        (0, first_end),
        (first_end + 1, cjk_end),  # starts after the space: "▁人" overlaps it
        (cjk_end, len(DOCUMENT)),
        (0, len(DOCUMENT)),  # overlaps all the others
        (DOCUMENT.index("Congress"), DOCUMENT.index("Taxes") + 3),  # mid-token end
    ]
    (got,) = embedder.embed_spans([(DOCUMENT, spans)], task=task)
    assert got.shape == (len(spans), reference.config["hidden_size"])
    assert_matches(got, reference.late_spans(DOCUMENT, spans, task))


def _numbered_pieces(count: int) -> list[str]:
    sentences = [*PIECES, *TEXTS[:4]]
    return [f"{sentences[i % len(sentences)]} ({i})" for i in range(count)]


def test_long_late_chunking_first_window(reference: ReferenceJina, embedder: Embedder):
    """Past max_tokens, the first pieces come from the first, full-size window."""
    pieces = _numbered_pieces(40)
    head = 1 + len(reference.content_ids(reference.instruction("retrieval.passage")))
    capacity = reference.max_tokens - head - 1
    got = embedder.encode(pieces, task="retrieval.passage", late_chunking=True)
    expected = reference.late_chunks(pieces, "retrieval.passage", [(0, capacity)])
    assert len(expected) >= 3
    assert_matches(got[0], expected[0])


def test_long_late_chunking_windows_without_overlap(reference: ReferenceJina, embedder: Embedder):
    """With no overlap, windows are consecutive full slices of the document, each wrapped
    in `<s> ... </s>` with positions from 0: pieces inside one window match it exactly."""
    no_overlap = LateChunkingOptions(overlap=0)
    pieces = _numbered_pieces(60)
    capacity = reference.max_tokens - 2  # no instruction for text-matching
    got = embedder.encode(
        pieces, task="text-matching", late_chunking=True, late_chunking_options=no_overlap
    )
    assert got.shape == (len(pieces), reference.config["hidden_size"])
    checked = 0
    windows = [(0, capacity), (capacity, 2 * capacity)]  # not the last: its start may vary
    for i, row in reference.late_chunks(pieces, "text-matching", windows).items():
        assert_matches(got[i], row)
        checked += 1
    assert checked >= 10

    # A character span across the window boundary pools tokens from both windows.
    document = " ".join(pieces)
    offsets = reference.tokenizer.encode(document, add_special_tokens=False).offsets
    boundary = offsets[capacity][0]
    spans = [(0, 40), (boundary - 30, boundary + 30), (offsets[5][0], offsets[2 * capacity - 5][1])]
    (got_spans,) = embedder.embed_spans(
        [(document, spans)], task="text-matching", late_chunking_options=no_overlap
    )
    assert_matches(got_spans, reference.late_spans(document, spans, "text-matching", windows))
