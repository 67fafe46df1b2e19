"""Rerankers: `python -m benchmarks --only rerank` (three cases, each in its own process).

- rerank_v2: jina-reranker-v2 at full size (random weights, released layout), 100
  query-document pairs of 16-1024 tokens, scored by ``Reranker.score`` (packed, no
  padding, through the scheduler) against padded batches of 32 through transformers'
  ``XLMRobertaForSequenceClassification`` on the same weights and the same token ids
  (what sentence-transformers' ``CrossEncoder`` runs). Target: >= 2x pairs/s. The scores
  of both are compared too.
- rerank_v3: jina-reranker-v3 at full size, one query with 64 documents of mixed length:
  seconds per query and peak memory of ``Reranker.score`` against one forward of
  transformers' ``Qwen3Model`` (``from_pretrained`` on the same folder) over the same
  prompt. Each side runs in a fresh process. On CPU the documents are 8-128 tokens so that
  the 0.6B model stays within minutes on a few cores (16-1024 on CUDA).
- rerank_server: retrieve-then-rerank through ``jina-connectors serve``'s app (a real
  uvicorn on 127.0.0.1): embed the query (``/v1/embeddings``, MiniLM), take the 50 best of
  400 passages by cosine, rerank them (``/v1/rerank``, jina-reranker-v2 at full size):
  median latency of the whole round trip and of each step.

``--quick`` runs the same code on tiny checkpoints.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.context import QUICK, Context
from benchmarks.measure import PeakMemory, synchronize
from benchmarks.report import CaseResult, Figure, Target
from benchmarks.workloads import log_uniform_lengths

V2_NAME = "rerank_v2"
V3_NAME = "rerank_v3"
SERVER_NAME = "rerank_server"
NAMES = (V2_NAME, V3_NAME, SERVER_NAME)
MIB = 1024**2
SEED = 0
QUERY = "which machine learning models turn sentences into vectors for search"
_WORDS = [
    "the",
    "model",
    "turns",
    "sentences",
    "into",
    "vectors",
    "for",
    "retrieval",
    "and",
    "search",
    "a",
    "query",
    "finds",
    "passages",
    "documents",
    "answers",
    "questions",
    "rights",
    "dignity",
    "freedom",
    "equal",
    "born",
    "people",
    "reason",
    "conscience",
    "life",
    "liberty",
    "security",
    "person",
    "president",
    "congress",
    "economy",
    "taxes",
    "schools",
    "health",
    "jobs",
    "forces",
    "quick",
    "brown",
    "fox",
    "jumps",
    "lazy",
    "dog",
    "machine",
    "learning",
    "embeddings",
    "chunking",
    "union",
    "state",
]


# ------------------------------------------------------------------------- inputs
def _checkpoint(cache_dir: Path, kind: str, quick: bool) -> Path:
    """A random reranker checkpoint in the released layout (cached; bf16 as released)."""
    from embedder_core.testing_rerankers import (
        RERANKER_V2_FULL_SIZE,
        RERANKER_V3_FULL_SIZE,
        write_tiny_reranker_v2_checkpoint,
        write_tiny_reranker_v3_checkpoint,
    )

    size = "tiny" if quick else "full"
    directory = cache_dir / f"reranker-{kind}-random-{size}-seed{SEED}"
    if (directory / "model.safetensors").is_file():
        return directory
    writer = (
        write_tiny_reranker_v2_checkpoint if kind == "v2" else write_tiny_reranker_v3_checkpoint
    )
    config = {} if quick else (RERANKER_V2_FULL_SIZE if kind == "v2" else RERANKER_V3_FULL_SIZE)
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    writer(partial, seed=SEED, **config)
    partial.rename(directory)
    return directory


def texts_of_lengths(model_dir: Path, lengths: list[int], seed: int) -> list[str]:
    """Texts of random words cut at exactly ``lengths`` tokens of ``model_dir``'s tokenizer
    (no special tokens)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    rng = np.random.default_rng(seed)
    texts = []
    for length in lengths:
        words = " ".join(rng.choice(_WORDS, size=length + 8))
        encoding = tokenizer.encode(words, add_special_tokens=False)
        texts.append(words[: encoding.offsets[length - 1][1]])
    return texts


# ---------------------------------------------------------------------- rerank_v2
def _hf_cross_encoder(model_dir: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """transformers' XLMRobertaForSequenceClassification with the checkpoint's weights,
    renamed from the flash layout (Wqkv split into query, key and value)."""
    import json

    from safetensors.torch import load_file
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    raw = json.loads((model_dir / "config.json").read_text())
    config = XLMRobertaConfig(
        **{
            k: raw[k]
            for k in (
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "hidden_act",
                "max_position_embeddings",
                "type_vocab_size",
                "layer_norm_eps",
                "pad_token_id",
                "bos_token_id",
                "eos_token_id",
            )
        },
        num_labels=1,
    )
    config._attn_implementation = "sdpa"
    weights = load_file(str(model_dir / "model.safetensors"))
    state: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        if name == "roberta.emb_ln.weight":
            state["roberta.embeddings.LayerNorm.weight"] = tensor
        elif name == "roberta.emb_ln.bias":
            state["roberta.embeddings.LayerNorm.bias"] = tensor
        elif ".mixer.Wqkv." in name:
            prefix, part = name.split(".mixer.Wqkv.")
            prefix = prefix.replace(".layers.", ".layer.")
            for piece, value in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                state[f"{prefix}.attention.self.{piece}.{part}"] = value
        elif ".layers." in name:
            renamed = name.replace(".layers.", ".layer.")
            for old, new in (
                (".mixer.out_proj.", ".attention.output.dense."),
                (".norm1.", ".attention.output.LayerNorm."),
                (".mlp.fc1.", ".intermediate.dense."),
                (".mlp.fc2.", ".output.dense."),
                (".norm2.", ".output.LayerNorm."),
            ):
                renamed = renamed.replace(old, new)
            state[renamed] = tensor
        else:
            state[name] = tensor
    model = XLMRobertaForSequenceClassification(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"weights do not map: missing {missing}, unexpected {unexpected}")
    return model.to(device=device, dtype=dtype).eval()


def _padded_scores(
    model: Any, pairs: list[list[int]], batch_size: int, device: torch.device
) -> np.ndarray:
    """CrossEncoder-style: batches of ``batch_size`` in input order, padded to their
    longest pair, sigmoid of the logit."""
    scores = []
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            longest = max(len(p) for p in batch)
            ids = torch.full((len(batch), longest), 1, dtype=torch.long)  # pad id 1
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, pair in enumerate(batch):
                ids[row, : len(pair)] = torch.tensor(pair)
                mask[row, : len(pair)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            scores.append(torch.sigmoid(logits[:, 0].float()).cpu())
    return torch.cat(scores).numpy()


def run_v2(ctx: Context) -> CaseResult:
    from embedder_core.reranker import load_reranker

    quick = ctx.sizes == QUICK
    model_dir = _checkpoint(ctx.cache_dir, "v2", quick)
    reranker = load_reranker(str(model_dir), device=ctx.device, dtype=ctx.dtype)
    count, high = (12, 256) if quick else (100, 1024)
    pair_lengths = log_uniform_lengths(count, 16, high, seed=SEED)
    query_tokens = len(reranker.pair_windows(QUERY, [""])[0][0]) - 4  # type: ignore[attr-defined]
    doc_lengths = [max(1, n - query_tokens - 4) for n in pair_lengths]
    documents = texts_of_lengths(model_dir, doc_lengths, SEED)
    pairs = [w[0] for w in reranker.pair_windows(QUERY, documents)]  # type: ignore[attr-defined]
    tokens = sum(len(p) for p in pairs)
    reranker.score(QUERY, documents[:4])  # warm-up
    synchronize(ctx.device)
    start = time.perf_counter()
    ours = reranker.score(QUERY, documents)
    synchronize(ctx.device)
    ours_seconds = time.perf_counter() - start
    ctx.log(f"ours: {count} pairs ({tokens} tokens) in {ours_seconds:.1f} s")

    baseline_model = _hf_cross_encoder(model_dir, ctx.device, ctx.dtype)
    _padded_scores(baseline_model, pairs[:4], 32, ctx.device)  # warm-up
    synchronize(ctx.device)
    start = time.perf_counter()
    theirs = _padded_scores(baseline_model, pairs, 32, ctx.device)
    synchronize(ctx.device)
    baseline_seconds = time.perf_counter() - start
    ctx.log(f"transformers padded: {baseline_seconds:.1f} s")
    padded = sum(
        len(pairs[i : i + 32]) * max(len(p) for p in pairs[i : i + 32]) for i in range(0, count, 32)
    )
    difference = float(np.abs(ours - theirs).max())
    label = f"{count} pairs {16}-{high} tok"
    return CaseResult(
        figures=[
            Figure(
                V2_NAME,
                f"pairs/s, {label} (vs padded transformers)",
                count / ours_seconds,
                count / baseline_seconds,
                Target(">=", 2.0),
                "ratio",
            ),
            Figure(
                V2_NAME, "max |score - transformers score|", difference, None, Target("<=", 1e-3)
            ),
        ],
        details={
            "pairs": count,
            "tokens": tokens,
            "padded_tokens_baseline": padded,
            "ours_seconds": ours_seconds,
            "baseline_seconds": baseline_seconds,
            "baseline": "transformers XLMRobertaForSequenceClassification, batches of 32 in "
            "input order padded to their longest pair, SDPA",
        },
    )


# ---------------------------------------------------------------------- rerank_v3
def _v3_inputs(model_dir: Path, quick: bool, device: str) -> list[str]:
    count = 64
    low, high = (8, 64) if quick else ((16, 1024) if device.startswith("cuda") else (8, 128))
    lengths = log_uniform_lengths(count, low, high, seed=SEED)
    return texts_of_lengths(model_dir, lengths, SEED + 1)


def measure_v3(model_dir: str, side: str, device: str, dtype: str, quick: bool) -> dict[str, Any]:
    """In a fresh process: seconds and peak memory of one query over 64 documents, by our
    reranker (``side="ours"``) or by transformers' Qwen3Model on the same prompt."""
    from embedder_core.reranker import load_reranker

    torch_device, torch_dtype = torch.device(device), getattr(torch, dtype)
    documents = _v3_inputs(Path(model_dir), quick, device)
    reranker = load_reranker(model_dir, device=torch_device, dtype=torch_dtype)
    blocks = reranker.blocks(QUERY, documents)  # type: ignore[attr-defined]
    prompt_tokens = sum(len(ids) for _, _, ids in blocks)
    if side == "ours":
        run = lambda: reranker.score(QUERY, documents)  # noqa: E731
        warm = lambda: reranker.score(QUERY, documents[:2])  # noqa: E731
    else:
        from transformers import Qwen3Model

        del reranker
        model = Qwen3Model.from_pretrained(model_dir, dtype=torch_dtype).to(torch_device).eval()
        prompts = [torch.tensor([ids], device=torch_device) for _, _, ids in blocks]

        def run() -> Any:
            with torch.inference_mode():
                return [model(input_ids=ids, use_cache=False).last_hidden_state for ids in prompts]

        def warm() -> Any:
            with torch.inference_mode():
                return model(input_ids=prompts[0][:, :32], use_cache=False)

    warm()
    with PeakMemory(torch_device) as memory:
        synchronize(torch_device)
        start = time.perf_counter()
        run()
        synchronize(torch_device)
        seconds = time.perf_counter() - start
    return {
        "side": side,
        "seconds": seconds,
        "prompt_tokens": prompt_tokens,
        "blocks": len(blocks),
        "peak_above_model_bytes": memory.peak_above_start,
        "memory_method": memory.method,
    }


def run_v3(ctx: Context) -> CaseResult:
    quick = ctx.sizes == QUICK
    model_dir = _checkpoint(ctx.cache_dir, "v3", quick)
    dtype = str(ctx.dtype).removeprefix("torch.")
    results = {}
    spawn = multiprocessing.get_context("spawn")
    for side in ("ours", "transformers"):
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            future = pool.submit(measure_v3, str(model_dir), side, str(ctx.device), dtype, quick)
            results[side] = future.result()
        ctx.log(f"{side}: {results[side]['seconds']:.1f} s")
    ours, theirs = results["ours"], results["transformers"]
    return CaseResult(
        figures=[
            Figure(
                V3_NAME,
                f"s/query, 64 docs ({ours['prompt_tokens']} prompt tok) vs Qwen3Model",
                ours["seconds"],
                theirs["seconds"],
            ),
            Figure(
                V3_NAME,
                "peak MiB above model vs Qwen3Model",
                ours["peak_above_model_bytes"] / MIB,
                theirs["peak_above_model_bytes"] / MIB,
            ),
        ],
        details={"runs": [ours, theirs]},
    )


# ------------------------------------------------------------------ rerank_server
def run_server(ctx: Context) -> CaseResult:
    import httpx
    import uvicorn

    from embedder_core import get_embedder
    from embedder_core.reranker import load_reranker
    from embedder_core.testing import minilm_path
    from jina_connectors.server.app import create_app

    quick = ctx.sizes == QUICK
    model_dir = _checkpoint(ctx.cache_dir, "v2", quick)
    embedder = get_embedder(str(minilm_path()), device=ctx.device)
    reranker = load_reranker(str(model_dir), device=ctx.device, dtype=ctx.dtype)
    passages = texts_of_lengths(model_dir, log_uniform_lengths(400, 40, 160, seed=SEED), SEED + 2)
    app = create_app(embedder, reranker=reranker)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    retrieve_ms, rerank_ms, total_ms = [], [], []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:

            def embed(texts: list[str], task: str) -> np.ndarray:
                body = {"input": texts, "task": task}
                data = client.post("/v1/embeddings", json=body).raise_for_status().json()
                return np.array([row["embedding"] for row in data["data"]], dtype=np.float32)

            index = np.concatenate(
                [embed(passages[i : i + 64], "retrieval.passage") for i in range(0, 400, 64)]
            )
            queries = [QUERY, "equal rights and dignity of every person", "the lazy brown dog"]
            for repeat, query in enumerate([queries[0], *queries]):  # the first is a warm-up
                start = time.perf_counter()
                vector = embed([query], "retrieval.query")[0]
                candidates = [passages[i] for i in np.argsort(-(index @ vector))[:50]]
                retrieved = time.perf_counter()
                body = {"query": query, "documents": candidates, "top_n": 5}
                answer = client.post("/v1/rerank", json=body).raise_for_status().json()
                assert len(answer["results"]) == 5
                done = time.perf_counter()
                if repeat:
                    retrieve_ms.append((retrieved - start) * 1000)
                    rerank_ms.append((done - retrieved) * 1000)
                    total_ms.append((done - start) * 1000)
    finally:
        server.should_exit = True
        thread.join(30)
    return CaseResult(
        figures=[
            Figure(
                SERVER_NAME, "retrieve+rerank 50 candidates, median ms", statistics.median(total_ms)
            ),
            Figure(
                SERVER_NAME, "  of which embed+search, median ms", statistics.median(retrieve_ms)
            ),
            Figure(SERVER_NAME, "  of which /v1/rerank, median ms", statistics.median(rerank_ms)),
        ],
        details={
            "embedder": "all-MiniLM-L6-v2",
            "reranker": f"jina-reranker-v2 random {'tiny' if quick else 'full size'}",
            "passages": 400,
            "total_ms": total_ms,
            "cpu_threads": torch.get_num_threads(),
            "pid": os.getpid(),
        },
    )


# ------------------------------------------------------------------- gpu_check
def gpu_checks(quick: bool, device: torch.device, cache_dir: Path) -> list[Any]:
    """``benchmarks.gpu_check``'s reranker checks: both rerankers on the device (bf16 on
    CUDA) against float32 on CPU (max score difference <= 0.02, same best document), v2's
    attention path (varlen on CUDA), and v2's pairs/s against padded transformers."""
    from benchmarks.gpu_check import Check, _device_dtype
    from embedder_core.reranker import load_reranker

    dtype = _device_dtype(device)
    checks: list[Any] = []
    for kind in ("v2", "v3"):
        model_dir = _checkpoint(cache_dir, kind, quick=True)
        lengths = log_uniform_lengths(130 if kind == "v3" else 24, 8, 600, seed=SEED)
        documents = texts_of_lengths(model_dir, lengths, SEED)
        reference = load_reranker(str(model_dir), device="cpu", dtype="float32")
        on_device = load_reranker(str(model_dir), device=device, dtype=dtype)
        want = reference.score(QUERY, documents)
        got = on_device.score(QUERY, documents)
        difference = float(np.abs(want - got).max())
        same_best = int(np.argmax(want)) == int(np.argmax(got))
        checks.append(
            Check(
                f"reranker {kind} parity: max |score diff| vs float32 CPU",
                difference,
                "<= 0.02 and same best document",
                difference <= 0.02 and same_best,
            )
        )
        if kind == "v2" and device.type == "cuda":
            mode = on_device._model.attention_mode()  # type: ignore[attr-defined]
            checks.append(Check("reranker v2 attention", mode, "varlen", mode == "varlen"))
    model_dir = _checkpoint(cache_dir, "v2", quick=quick)
    reranker = load_reranker(str(model_dir), device=device, dtype=dtype)
    count, high = (12, 256) if quick else (512, 1024)
    documents = texts_of_lengths(model_dir, log_uniform_lengths(count, 16, high, seed=SEED), 1)
    pairs = [w[0] for w in reranker.pair_windows(QUERY, documents)]  # type: ignore[attr-defined]
    reranker.score(QUERY, documents[:4])
    synchronize(device)
    start = time.perf_counter()
    reranker.score(QUERY, documents)
    synchronize(device)
    ours = time.perf_counter() - start
    baseline = _hf_cross_encoder(model_dir, device, dtype)
    _padded_scores(baseline, pairs[:4], 32, device)
    synchronize(device)
    start = time.perf_counter()
    _padded_scores(baseline, pairs, 32, device)
    synchronize(device)
    theirs = time.perf_counter() - start
    checks.append(
        Check(
            f"reranker v2 pairs/s vs padded transformers ({count} pairs)",
            theirs / ours,
            "reported",
            None,
            {"ours_pairs_per_s": count / ours, "transformers_pairs_per_s": count / theirs},
        )
    )
    return checks
