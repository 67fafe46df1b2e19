"""Local rerankers against independent computations of their published math.

The references below read the safetensors file and tokenizer.json directly and compute
the released semantics step by step (per-pair padding-free forwards, explicit windows,
an explicit Qwen3 decoder, the block and weighting rules), sharing no code with
embedder_core's reranker.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from embedder_core import (
    RerankerCheckpointError,
    RerankInputError,
    UnsupportedModelError,
    get_embedder,
    get_reranker,
    inspect_model,
)
from embedder_core.testing_rerankers import (
    write_tiny_reranker_v2_checkpoint,
    write_tiny_reranker_v3_checkpoint,
)

QUERY = "What do machine learning models turn sentences into?"
DOCS = [
    "Machine learning models turn sentences into vectors for retrieval and search.",
    "The quick brown fox jumps over the lazy dog.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "",
    "Embeddings, chunking, documents, passages, queries, questions and answers.",
    "人人生而自由，在尊严和权利上一律平等。",
]


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_reranker_v2_checkpoint(tmp_path_factory.mktemp("reranker-v2"))


@pytest.fixture(scope="module")
def v3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_reranker_v3_checkpoint(tmp_path_factory.mktemp("reranker-v3"))


# ------------------------------------------------------------------ v2 reference
def _v2_reference(model_dir: Path, query: str, documents: list[str]) -> np.ndarray:
    weights = {k: v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]
    limit = config["max_position_embeddings"] - 2  # 1024 tokens

    def forward(ids: list[int]) -> float:
        n = len(ids)
        x = (
            weights["roberta.embeddings.word_embeddings.weight"][ids]
            + weights["roberta.embeddings.position_embeddings.weight"][torch.arange(n) + 2]
            + weights["roberta.embeddings.token_type_embeddings.weight"][0]
        )
        x = torch.nn.functional.layer_norm(
            x, x.shape[-1:], weights["roberta.emb_ln.weight"], weights["roberta.emb_ln.bias"], eps
        )
        for i in range(config["num_hidden_layers"]):

            def w(name: str, i: int = i) -> torch.Tensor:
                return weights[f"roberta.encoder.layers.{i}.{name}"]

            qkv = x @ w("mixer.Wqkv.weight").T + w("mixer.Wqkv.bias")
            q, k, v = qkv.view(n, 3, heads, -1).unbind(1)
            scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(q.shape[-1])
            attn = torch.einsum("hij,jhd->ihd", scores.softmax(-1), v).reshape(n, -1)
            x = torch.nn.functional.layer_norm(
                x + attn @ w("mixer.out_proj.weight").T + w("mixer.out_proj.bias"),
                x.shape[-1:],
                w("norm1.weight"),
                w("norm1.bias"),
                eps,
            )
            h = torch.nn.functional.gelu(x @ w("mlp.fc1.weight").T + w("mlp.fc1.bias"))
            x = torch.nn.functional.layer_norm(
                x + h @ w("mlp.fc2.weight").T + w("mlp.fc2.bias"),
                x.shape[-1:],
                w("norm2.weight"),
                w("norm2.bias"),
                eps,
            )
        cls = torch.tanh(
            x[0] @ weights["classifier.dense.weight"].T + weights["classifier.dense.bias"]
        )
        logit = cls @ weights["classifier.out_proj.weight"].T + weights["classifier.out_proj.bias"]
        return float(torch.sigmoid(logit)[0])

    query_ids = tokenizer.encode(query, add_special_tokens=False).ids[:510]
    window = limit - (len(query_ids) + 2) - 2
    scores = []
    for document in documents:
        doc_ids = tokenizer.encode(document, add_special_tokens=False).ids
        if len(doc_ids) <= window:
            pieces = [doc_ids]
            # Short pairs: exactly tokenizer.json's own pair template.
            if len(query_ids) < 510:
                assert tokenizer.encode(query, document).ids == [
                    0,
                    *query_ids,
                    2,
                    2,
                    *doc_ids,
                    2,
                ]
        else:
            pieces, start = [], 0
            while start + window < len(doc_ids):
                pieces.append(doc_ids[start : start + window])
                start += window - 80
            pieces.append(doc_ids[-window:])
        scores.append(max(forward([0, *query_ids, 2, 2, *piece, 2]) for piece in pieces))
    return np.array(scores)


def _assert_same_ranking(scores: np.ndarray, reference: np.ndarray) -> None:
    np.testing.assert_allclose(scores, reference, atol=1e-4, rtol=0)
    order = np.argsort(-reference, kind="stable")
    gaps = np.abs(np.diff(reference[order]))
    assert gaps.min() > 2e-4, "reference scores too close to compare orders"
    assert list(np.argsort(-scores, kind="stable")) == list(order)


def test_v2_equals_the_published_cross_encoder_math(v2_dir: Path) -> None:
    reranker = get_reranker(str(v2_dir), device="cpu")
    assert reranker.kind == "jina-reranker-v2-base-multilingual"
    reference = _v2_reference(v2_dir, QUERY, DOCS)
    scores = reranker.score(QUERY, DOCS)
    assert scores.shape == (len(DOCS),)
    _assert_same_ranking(scores, reference)
    results = reranker.rerank(QUERY, DOCS)
    assert [r.index for r in results] == list(np.argsort(-reference, kind="stable"))
    assert [r.document for r in results] == [DOCS[r.index] for r in results]
    assert [r.relevance_score for r in results] == sorted(
        (r.relevance_score for r in results), reverse=True
    )


def test_v2_long_documents_score_their_best_window(v2_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(v2_dir / "tokenizer.json"))
    base = " ".join(DOCS[:3] + DOCS[4:]) + " "
    long_docs = [base * 60, (base * 25) + DOCS[0], DOCS[1], base * 14]
    lengths = [len(tokenizer.encode(d, add_special_tokens=False).ids) for d in long_docs]
    long_query = "machine learning " * 300  # over 512 tokens: cut
    assert len(tokenizer.encode(long_query, add_special_tokens=False).ids) > 512
    for query in (QUERY, long_query):
        query_tokens = min(len(tokenizer.encode(query, add_special_tokens=False).ids), 510)
        window = 1024 - (query_tokens + 2) - 2
        assert max(lengths) > 3 * window  # several windows, a short last one
        reference = _v2_reference(v2_dir, query, long_docs)
        _assert_same_ranking(
            get_reranker(str(v2_dir), device="cpu").score(query, long_docs), reference
        )


def test_v2_scores_do_not_depend_on_neighbours_or_concurrency(v2_dir: Path) -> None:
    reranker = get_reranker(str(v2_dir), device="cpu")
    alone = np.array([reranker.score(QUERY, [d])[0] for d in DOCS])
    together = reranker.score(QUERY, DOCS)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = reranker.score(QUERY, DOCS[i:] + DOCS[:i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, scores in results.items():
        np.testing.assert_allclose(np.roll(scores, i), together, atol=1e-5)


# ------------------------------------------------------------------ v3 reference
_SYSTEM = (
    "You are a search relevance expert who can determine a ranking of the passages based on "
    "how relevant they are to the query. If the query is a question, how relevant a passage "
    "is depends on how well it answers the question. If not, try to analyze the intent of "
    "the query and assess how well each passage satisfies the intent. If an instruction is "
    "provided, you should follow the instruction when determining the ranking."
)


def _v3_prompt(query: str, docs: list[str]) -> str:
    text = "<|im_start|>system\n" + _SYSTEM + "<|im_end|>\n<|im_start|>user\n"
    text += (
        f"I will provide you with {len(docs)} passages, each indicated by a numerical "
        f"identifier. Rank the passages based on their relevance to query: {query}\n"
    )
    blocks = [f'<passage id="{i}">\n{d}<|embed_token|>\n</passage>' for i, d in enumerate(docs)]
    text += "\n".join(blocks) + "\n"
    text += f"<query>\n{query}<|rerank_token|>\n</query>"
    return text + "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def _qwen3_last_states(weights: dict[str, torch.Tensor], config: dict, ids: list[int]):
    n = len(ids)
    heads, kv, d = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    eps = config["rms_norm_eps"]

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    inv = 1.0 / (config["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    angles = torch.arange(n, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([angles.cos(), angles.cos()], -1).float()[:, None, :]
    sin = torch.cat([angles.sin(), angles.sin()], -1).float()[:, None, :]

    def rope(t: torch.Tensor) -> torch.Tensor:
        rotated = torch.cat([-t[..., d // 2 :], t[..., : d // 2]], -1)
        return t * cos + rotated * sin

    x = weights["model.embed_tokens.weight"][ids]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, weights[p + "input_layernorm.weight"])
        q = rms(
            (h @ weights[p + "self_attn.q_proj.weight"].T).view(n, heads, d),
            weights[p + "self_attn.q_norm.weight"],
        )
        k = rms(
            (h @ weights[p + "self_attn.k_proj.weight"].T).view(n, kv, d),
            weights[p + "self_attn.k_norm.weight"],
        )
        v = (h @ weights[p + "self_attn.v_proj.weight"].T).view(n, kv, d)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(heads // kv, dim=1)
        v = v.repeat_interleave(heads // kv, dim=1)
        scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(d)
        scores = scores.masked_fill(~causal, float("-inf"))
        attn = torch.einsum("hij,jhd->ihd", scores.softmax(-1), v).reshape(n, heads * d)
        x = x + attn @ weights[p + "self_attn.o_proj.weight"].T
        h = rms(x, weights[p + "post_attention_layernorm.weight"])
        gate = torch.nn.functional.silu(h @ weights[p + "mlp.gate_proj.weight"].T)
        x = (
            x
            + (gate * (h @ weights[p + "mlp.up_proj.weight"].T))
            @ weights[p + "mlp.down_proj.weight"].T
        )
    return rms(x, weights["model.norm.weight"])


def _v3_reference(model_dir: Path, query: str, documents: list[str]) -> tuple[np.ndarray, list]:
    weights = {k: v.float() for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    config = json.loads((model_dir / "config.json").read_text())
    max_length = json.loads((model_dir / "tokenizer_config.json").read_text())["model_max_length"]
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    embed_id, rerank_id = tok.token_to_id("<|embed_token|>"), tok.token_to_id("<|rerank_token|>")

    def cut(text: str, limit: int) -> str:
        text = text.replace("<|embed_token|>", "").replace("<|rerank_token|>", "")
        ids = tok.encode(text, add_special_tokens=False).ids
        return tok.decode(ids[:limit], skip_special_tokens=False) if len(ids) > limit else text

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    q = cut(query, 512)
    docs = [cut(d, 2048) for d in documents]
    blocks, current, capacity = [], [], max_length - 2 * count(q)
    for i, doc in enumerate(docs):
        current.append(i)
        capacity -= count(doc)
        if len(current) >= 125 or capacity <= 2048:
            blocks.append(current)
            current, capacity = [], max_length - 2 * count(q)
    if current:
        blocks.append(current)

    def project(states: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(states @ weights["projector.0.weight"].T)
        return (hidden @ weights["projector.2.weight"].T).double()

    doc_vectors: dict[int, torch.Tensor] = {}
    query_vectors, block_weights = [], []
    for block in blocks:
        ids = tok.encode(_v3_prompt(q, [docs[i] for i in block])).ids
        states = _qwen3_last_states(weights, config, ids)
        embeds = [j for j, t in enumerate(ids) if t == embed_id]
        assert len(embeds) == len(block) and ids.count(rerank_id) == 1
        vectors = project(states[embeds])
        query_vector = project(states[ids.index(rerank_id)][None])[0]
        for i, vector in zip(block, vectors):
            doc_vectors[i] = vector
        cosines = [float(torch.cosine_similarity(v, query_vector, dim=0)) for v in vectors]
        query_vectors.append(query_vector)
        block_weights.append(max((1 + c) / 2 for c in cosines))
    final = sum(w * v for w, v in zip(block_weights, query_vectors)) / sum(block_weights)
    scores = [
        float(torch.cosine_similarity(doc_vectors[i], final, dim=0)) for i in range(len(docs))
    ]
    return np.array(scores), blocks


def test_v3_equals_the_published_listwise_math(v3_dir: Path) -> None:
    reranker = get_reranker(str(v3_dir), device="cpu")
    assert reranker.kind == "jina-reranker-v3"
    docs = [*DOCS, "a text with a <|embed_token|> marker and a <|rerank_token|> one"]
    query = QUERY + " <|rerank_token|>"
    reference, blocks = _v3_reference(v3_dir, query, docs)
    assert len(blocks) == 1
    _assert_same_ranking(reranker.score(query, docs), reference)
    results = reranker.rerank(query, docs, top_n=3)
    assert [r.index for r in results] == list(np.argsort(-reference, kind="stable"))[:3]


def test_v3_over_125_documents_average_the_query_over_blocks(v3_dir: Path) -> None:
    words = [
        "machine",
        "learning",
        "vectors",
        "retrieval",
        "search",
        "fox",
        "dog",
        "rights",
        "dignity",
    ]
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(words, size=int(rng.integers(1, 6)))) for _ in range(131)]
    reference, blocks = _v3_reference(v3_dir, QUERY, docs)
    assert [len(b) for b in blocks] == [125, 6]
    scores = get_reranker(str(v3_dir), device="cpu").score(QUERY, docs)
    np.testing.assert_allclose(scores, reference, atol=1e-4, rtol=0)
    # The weighting matters: scoring each block on its own gives other numbers.
    alone = get_reranker(str(v3_dir), device="cpu").score(QUERY, docs[125:])
    assert np.abs(alone - scores[125:]).max() > 1e-3


def test_v3_blocks_close_when_the_length_capacity_runs_out(tmp_path: Path) -> None:
    model_dir = write_tiny_reranker_v3_checkpoint(tmp_path / "v3", model_max_length=2400)
    base = " ".join(DOCS) + " "
    docs = [base * (1 + i % 3) for i in range(9)] + [base * 60]  # the last one is cut at 2048
    reference, blocks = _v3_reference(model_dir, QUERY, docs)
    assert len(blocks) > 2
    scores = get_reranker(str(model_dir), device="cpu").score(QUERY, docs)
    np.testing.assert_allclose(scores, reference, atol=1e-4, rtol=0)


# ------------------------------------------------------------------ loading rules
@pytest.mark.parametrize("which", ["v2", "v3"])
def test_missing_and_unused_tensors_are_refused_by_name(tmp_path: Path, which: str) -> None:
    write = (
        write_tiny_reranker_v2_checkpoint if which == "v2" else write_tiny_reranker_v3_checkpoint
    )
    model_dir = write(tmp_path / which)
    tensors = load_file(str(model_dir / "model.safetensors"))
    dropped = "classifier.dense.bias" if which == "v2" else "projector.2.weight"
    save_file(
        {k: v for k, v in tensors.items() if k != dropped}, str(model_dir / "model.safetensors")
    )
    with pytest.raises(UnsupportedModelError, match=f"missing tensor.*{dropped}"):
        get_reranker(str(model_dir), device="cpu")
    extra = "lm_head.weight" if which == "v3" else "roberta.pooler.dense.weight"
    save_file({**tensors, extra: torch.zeros(2, 2)}, str(model_dir / "model.safetensors"))
    with pytest.raises(UnsupportedModelError, match=f"unused tensor.*{extra}"):
        get_reranker(str(model_dir), device="cpu")


@pytest.mark.parametrize("which", ["v2", "v3"])
def test_a_reranker_is_never_loaded_as_an_embedder(tmp_path: Path, which: str) -> None:
    write = (
        write_tiny_reranker_v2_checkpoint if which == "v2" else write_tiny_reranker_v3_checkpoint
    )
    model_dir = write(tmp_path / which)
    for load in (get_embedder, inspect_model):
        with pytest.raises(RerankerCheckpointError, match=r"get_reranker.*--reranker"):
            load(str(model_dir))


def test_an_embedder_is_not_a_reranker(tiny_jina_dir: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="not a reranker"):
        get_reranker(str(tiny_jina_dir))


def test_hosted_names_are_hub_aliases() -> None:
    from embedder_core import canonical_model_id

    assert canonical_model_id("jina-reranker-v3") == "jinaai/jina-reranker-v3"
    assert (
        canonical_model_id("jina-reranker-v2-base-multilingual@abc")
        == "jinaai/jina-reranker-v2-base-multilingual@abc"
    )


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize("which", ["v2", "v3"])
def test_bad_input_gets_typed_errors(v2_dir: Path, v3_dir: Path, which: str) -> None:
    reranker = get_reranker(str(v2_dir if which == "v2" else v3_dir), device="cpu")
    with pytest.raises(RerankInputError, match="query is empty"):
        reranker.rerank("  ", DOCS)
    with pytest.raises(RerankInputError, match="documents is empty"):
        reranker.rerank(QUERY, [])
    for top_n in (0, -1, True):
        with pytest.raises(RerankInputError, match="top_n"):
            reranker.rerank(QUERY, DOCS, top_n=top_n)
    with pytest.raises(TypeError, match="document 1 is int"):
        reranker.rerank(QUERY, ["a", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="documents must be a sequence"):
        reranker.rerank(QUERY, "one string")
    # An empty document is scored (as empty text), not an error.
    assert np.isfinite(reranker.score(QUERY, ["", " "])).all()
    results = reranker.rerank(QUERY, DOCS, top_n=100, return_documents=False)
    assert len(results) == len(DOCS) and all(r.document is None for r in results)


# ------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("which", ["v2", "v3"])
def test_bf16_on_cpu_warns_where_emulated_and_stays_close(
    v2_dir: Path, v3_dir: Path, which: str
) -> None:
    import warnings

    from embedder_core import SlowDtypeWarning
    from embedder_core.cpu_features import cpu_flags, missing_bf16_flags
    from embedder_core.reranker import load_reranker

    model_dir = v2_dir if which == "v2" else v3_dir
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bf16 = load_reranker(str(model_dir), device="cpu", dtype="bfloat16")
    slow = [w for w in caught if issubclass(w.category, SlowDtypeWarning)]
    assert bool(slow) == bool(missing_bf16_flags(cpu_flags()))
    assert bf16.dtype == torch.bfloat16  # type: ignore[attr-defined]
    float32 = get_reranker(str(model_dir), device="cpu")
    assert float32.dtype == torch.float32  # type: ignore[attr-defined]
    np.testing.assert_allclose(bf16.score(QUERY, DOCS), float32.score(QUERY, DOCS), atol=0.05)


def test_v2_concurrent_calls_share_forward_batches(v2_dir: Path) -> None:
    from embedder_core.reranker import load_reranker

    reranker = load_reranker(str(v2_dir), device="cpu", max_batch_tokens=4096)
    seen: list[int] = []
    reranker.scheduler.add_batch_listener(lambda stats: seen.append(stats.requests))  # type: ignore[attr-defined]
    long_document = " ".join(DOCS) * 40  # several windows: several batches
    first = reranker.submit(QUERY, [long_document] * 3)
    second = reranker.submit(QUERY, DOCS)
    np.testing.assert_allclose(second.result(), reranker.score(QUERY, DOCS), atol=1e-5)
    first.result()
    assert max(seen) >= 2, seen  # some forward ran both calls' pairs
    reranker.close()
