"""The typed public surface: `encode`'s return type follows `embedding_type`, and public
constructors name only public types."""

from __future__ import annotations

import collections.abc
import inspect
import re
import typing
from typing import Literal, get_args

import numpy as np
import pytest

import embedder_core
from embedder_core import EMBEDDING_TYPES, Embedder, TaskSpec, convert_embeddings


def _overload_returns(function: typing.Callable) -> dict[object, object]:
    """embedding_type annotation -> return annotation, for each @overload of ``function``."""
    namespace = vars(inspect.getmodule(function))
    returns = {}
    for overload in typing.get_overloads(function):
        hints = typing.get_type_hints(overload, globalns=namespace)
        returns[hints["embedding_type"]] = hints["return"]
    return returns


@pytest.mark.parametrize("function", [Embedder.encode, convert_embeddings])
def test_return_type_follows_embedding_type(function: typing.Callable):
    returns = _overload_returns(function)
    array_types = embedder_core.ArrayEmbeddingType
    assert set(get_args(array_types)) == set(EMBEDDING_TYPES) - {"base64"}
    assert returns[array_types] is np.ndarray
    assert returns[Literal["base64"]] == list[str]
    assert returns[str] == np.ndarray | list[str]  # a str only known at run time


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
