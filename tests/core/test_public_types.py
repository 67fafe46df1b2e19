"""The typed public surface: `encode` returns arrays (one signature; the deprecated "base64"
warns), and public constructors name only public types."""

from __future__ import annotations

import base64
import collections.abc
import importlib
import inspect
import re
import typing
import warnings
from typing import get_args

import numpy as np
import pytest

import embedder_core
from embedder_core import EMBEDDING_TYPES, Embedder, EmbedderProtocol, TaskSpec
from embedder_core.output import convert_embeddings
from embedder_core.scheduler import PendingEmbeddings


@pytest.mark.parametrize(
    ("function", "returns"),
    [
        (Embedder.encode, np.ndarray),
        (EmbedderProtocol.encode, np.ndarray),
        (convert_embeddings, np.ndarray),
        (Embedder.submit, PendingEmbeddings[np.ndarray]),
        (Embedder.submit_token_ids, PendingEmbeddings[np.ndarray]),
    ],
)
def test_encode_has_one_signature_returning_arrays(function: typing.Callable, returns: object):
    """base64 is no return type of the core: no overloads, one array return type."""
    assert typing.get_overloads(function) == []
    # The protocol imports its annotation types only for type checkers: give them all.
    namespace = {name: getattr(embedder_core, name) for name in embedder_core.__all__}
    namespace |= {"np": np, "PendingEmbeddings": PendingEmbeddings}
    hints = typing.get_type_hints(function, globalns=namespace | vars(inspect.getmodule(function)))
    assert hints["return"] == returns
    assert hints["embedding_type"] == embedder_core.EmbeddingType
    array_types = embedder_core.ArrayEmbeddingType
    assert set(get_args(array_types)) == set(EMBEDDING_TYPES) - {"base64"}


def test_base64_is_deprecated_and_still_returns_strings(tiny_jina_embedder: Embedder):
    texts = ["a text", "another text"]
    floats = tiny_jina_embedder.encode(texts)
    calls = {
        "encode": lambda: tiny_jina_embedder.encode(texts, embedding_type="base64"),
        "submit": lambda: tiny_jina_embedder.submit(texts, embedding_type="base64").result(),
        "convert_embeddings": lambda: convert_embeddings(floats, "base64"),
    }
    for name, call in calls.items():
        with pytest.warns(DeprecationWarning, match="base64") as caught:
            encoded = call()
        # Pointed at the caller's line, not inside embedder_core.
        assert [w.filename for w in caught] == [__file__], name
        assert isinstance(encoded, list) and all(isinstance(e, str) for e in encoded), name
        decoded = np.stack([np.frombuffer(base64.b64decode(e), dtype="<f4") for e in encoded])
        np.testing.assert_array_equal(decoded, floats)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the array types do not warn
        for kind in set(EMBEDDING_TYPES) - {"base64"}:
            assert isinstance(tiny_jina_embedder.encode(texts, embedding_type=kind), np.ndarray)


def test_runtime_results_match_the_declared_types(tiny_jina_embedder: Embedder):
    for kind in EMBEDDING_TYPES:
        result = tiny_jina_embedder.encode(["a text"], embedding_type=kind)
        assert isinstance(result, list if kind == "base64" else np.ndarray), kind


def test_public_constructor_names_no_private_type():
    hints = typing.get_type_hints(Embedder.__init__, globalns=vars(embedder_core.embedder))
    for name, hint in hints.items():
        assert not re.search(r"\b_[A-Za-z]", repr(hint)), (name, hint)
    assert hints["tasks"] == collections.abc.Mapping[str, TaskSpec]
    assert TaskSpec in vars(embedder_core).values()


#: What a user of the core writes: the embedder and rerankers, their options and types,
#: model inspection, and the errors (and warning) they raise. Pinned: a name added to or
#: dropped from the face is a decision, made here.
PUBLIC_FACE = {
    # the embedder, the rerankers and the shared instances
    "Embedder",
    "EmbedderProtocol",
    "TaskSpec",
    "Reranker",
    "RerankResult",
    "get_embedder",
    "get_reranker",
    # options and result types
    "EMBEDDING_TYPES",
    "ArrayEmbeddingType",
    "EmbeddingType",
    "Chunker",
    "Span",
    "DocumentChunk",
    "LateChunkingOptions",
    # model identity and inspection
    "DEFAULT_MODEL",
    "HOSTED_MODEL_NAMES",
    "MODEL_ENV_VAR",
    "STANDARD_TASKS",
    "ModelInfo",
    "canonical_model_id",
    "default_model",
    "inspect_model",
    "model_url",
    # errors and the warning users see (a full queue and a closed embedder reach callers
    # of encode/submit)
    "ModelNotFoundError",
    "QueueFullError",
    "RerankInputError",
    "RerankerCheckpointError",
    "SchedulerClosedError",
    "SlowDtypeWarning",
    "TokenLimitError",
    "UnsafeCheckpointError",
    "UnsupportedModelError",
}

#: Names that left the face (scheduler internals, the backends' entry point group, the
#: output converter): importable for one release, with a DeprecationWarning naming the home.
LEFT_THE_FACE = {
    "BACKENDS_GROUP": "embedder_core.loading",
    "BatchStats": "embedder_core.scheduler",
    "EmbeddingScheduler": "embedder_core.scheduler",
    "PendingEmbeddings": "embedder_core.scheduler",
    "Reduction": "embedder_core.late_chunking",
    "convert_embeddings": "embedder_core.output",
}


def test_the_public_face_is_pinned():
    assert set(embedder_core.__all__) == PUBLIC_FACE
    assert len(embedder_core.__all__) == len(PUBLIC_FACE)  # no name twice
    for name in embedder_core.__all__:
        assert getattr(embedder_core, name) is not None, name


@pytest.mark.parametrize("name", sorted(LEFT_THE_FACE))
def test_names_that_left_the_face_warn_and_still_import(name: str):
    home = importlib.import_module(LEFT_THE_FACE[name])
    embedder_core.__dict__.pop(name, None)  # as in a fresh process
    with pytest.warns(DeprecationWarning, match=rf"{name}.*{LEFT_THE_FACE[name]}"):
        value = getattr(embedder_core, name)
    assert value is getattr(home, name)
    assert name not in embedder_core.__all__
