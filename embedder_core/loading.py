"""Resolving a model reference (local directory or Hub id) and reading its files safely.

Weights come from safetensors only: nothing in the checkpoint is unpickled or executed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ModelNotFoundError, UnsafeCheckpointError, UnsupportedModelError

DEFAULT_MODEL = "jinaai/jina-embeddings-v3"
MODEL_ENV_VAR = "JINA_CONNECTORS_MODEL"

#: Model names of the hosted Jina API that the local suite runs, mapped to their Hub ids, so
#: code written for the hosted API (``model="jina-embeddings-v3"``) runs unchanged. A local
#: directory of that name still wins.
HOSTED_MODEL_NAMES: dict[str, str] = {
    "jina-embeddings-v3": DEFAULT_MODEL,
    # Rerankers (embedder_core.get_reranker); as embedders they are refused at load.
    "jina-reranker-v2-base-multilingual": "jinaai/jina-reranker-v2-base-multilingual",
    "jina-reranker-v3": "jinaai/jina-reranker-v3",
    **{
        f"jina-embeddings-v2-{variant}": f"jinaai/jina-embeddings-v2-{variant}"
        for variant in ("small-en", "base-en", "base-de", "base-es", "base-zh")
    },
}
#: jina-embeddings-v2-base-code is JinaBERT's "qk post-norm" variant (norms on q and k,
#: other MLP weights). Its exact math is not established from public facts, so the core
#: refuses it rather than run it approximately.
V2_BASE_CODE_REFUSAL = (
    "jina-embeddings-v2-base-code is the qk-post-norm variant of JinaBERT (layer norms on q "
    "and k, different MLP weights); the core does not implement it, and running it as "
    "jina-embeddings-v2 would give wrong vectors. Use jina-embeddings-v2-base-en or "
    "jina-embeddings-v3"
)
_REFUSED_MODELS = {
    "jina-embeddings-v2-base-code": V2_BASE_CODE_REFUSAL,
    "jinaai/jina-embeddings-v2-base-code": V2_BASE_CODE_REFUSAL,
}

# Files an embedder needs. fnmatch's "*" also matches "/", so these take the
# sentence-transformers module folders too (1_Pooling/config.json, 2_Dense/config.json and
# 2_Dense/model.safetensors, 3_Normalize/config.json); pickles and ONNX/OpenVINO exports
# are skipped.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

if TYPE_CHECKING:  # torch is imported by the functions that read weights, not by this module
    import torch


#: Entry point group of backends for URL model references: the entry point's name is the URL
#: scheme (``http``, ``https``) and its object is called as ``backend(url, **options)``.
#: jina-connectors declares ``jina_connectors.remote:RemoteEmbedder`` for both schemes.
BACKENDS_GROUP = "embedder_core.backends"


def default_model() -> str:
    """The model used when none is given: ``$JINA_CONNECTORS_MODEL``, else jina-embeddings-v3."""
    return os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL


def _how_to_get(model: str, revision: str | None = None) -> str:
    command = f"{model} --revision {revision}" if revision else model
    return (
        f"Download it with `hf download {command}` while online, then run with "
        "local_files_only=True / HF_HUB_OFFLINE=1; or pass a local directory as model=... or "
        f"set {MODEL_ENV_VAR}=/path/to/model."
    )


def model_url(model: str | os.PathLike[str] | None) -> str | None:
    """``model`` (None: the default model) as a normalized URL if it is one, else None.

    A URL is ``scheme://host[:port][/path]``; a local path or Hub id never contains
    ``://``. Normalized: scheme and host lower-cased, no trailing slash, no query or fragment.
    """
    name = os.fspath(model) if model is not None else default_model()
    if not isinstance(name, str) or "://" not in name:
        return None
    parts = urlsplit(name.strip())
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"model {name!r} looks like a URL but has no scheme or host")
    if parts.query or parts.fragment:
        raise ValueError(f"model URL {name!r} must not have a query or fragment")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def url_backend(url: str) -> Callable[..., Any]:
    """The backend registered for ``url``'s scheme in the ``embedder_core.backends`` entry
    point group; raises ``ModelNotFoundError`` when no installed package provides one."""
    scheme = urlsplit(url).scheme
    for entry in entry_points(group=BACKENDS_GROUP):
        if entry.name == scheme:
            backend: Callable[..., Any] = entry.load()
            return backend
    raise ModelNotFoundError(
        f"model {url!r} is a URL, but no installed package serves {scheme}:// models "
        f"(entry point group {BACKENDS_GROUP!r}). Install jina-connectors[remote] to use an "
        "embedding server, or pass a local directory or Hub id"
    )


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from: a local directory, or a Hub repository at a revision."""

    local_dir: Path | None = None
    repo_id: str | None = None
    revision: str | None = None

    @property
    def canonical_id(self) -> str:
        """The model's one identity: the resolved directory, or ``repo_id[@revision]``."""
        if self.local_dir is not None:
            return str(self.local_dir)
        assert self.repo_id is not None
        return self.repo_id if self.revision is None else f"{self.repo_id}@{self.revision}"


def resolve_model_ref(
    model: str | os.PathLike[str] | None = None, revision: str | None = None
) -> ModelRef:
    """Read a model reference without loading or downloading anything.

    - An existing directory (relative, absolute, ``~``, through a symlink) is a local model,
      named by its resolved absolute path. It always wins over a Hub id of the same spelling.
    - A hosted API name (``jina-embeddings-v3``, ``jina-embeddings-v2-base-en`` and the rest
      of :data:`HOSTED_MODEL_NAMES`) is its Hub id.
    - Anything else must be a Hub id, ``namespace/name``, optionally ``@revision``.
    - ``model=None`` means ``$JINA_CONNECTORS_MODEL``, else jina-embeddings-v3.
    """
    if revision is not None and (not isinstance(revision, str) or not revision):
        raise ValueError(f"revision must be a non-empty str or None, got {revision!r}")
    name = os.fspath(model) if model is not None else default_model()
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a non-empty path or Hub id, got {model!r}")
    if model_url(name) is not None:
        raise ModelNotFoundError(
            f"model {name!r} is a server URL, not a checkpoint: load it with "
            "embedder_core.get_embedder(url), which returns the URL scheme's backend"
        )
    path = Path(name).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(
                f"revision={revision!r} applies to Hub ids; {name!r} is a local directory"
            )
        return ModelRef(local_dir=path.resolve())
    looks_like_path = (
        path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name
    )
    if path.exists() or looks_like_path:
        raise ModelNotFoundError(
            f"model {name!r} is not a directory. Point model at a directory with config.json, "
            f"model.safetensors and tokenizer.json. {_how_to_get(DEFAULT_MODEL)}"
        )
    repo_id, _, pinned = name.partition("@")
    if "@" in name:
        if not pinned:
            raise ValueError(f"model {name!r} has an empty revision after '@'")
        if revision is not None and revision != pinned:
            raise ValueError(f"model {name!r} pins revision {pinned!r}, but revision={revision!r}")
        revision = pinned
    if repo_id in _REFUSED_MODELS:
        raise UnsupportedModelError(f"model {name!r}: {_REFUSED_MODELS[repo_id]}")
    repo_id = HOSTED_MODEL_NAMES.get(repo_id, repo_id)
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ModelNotFoundError(
            f"model {name!r} is neither a local directory nor a valid Hugging Face Hub id ({error})"
        ) from None
    return ModelRef(repo_id=repo_id, revision=revision)


def canonical_model_id(
    model: str | os.PathLike[str] | None = None, revision: str | None = None
) -> str:
    """The one identity of ``model``: what ``Embedder.model_name`` and collections record.

    A local directory gives its resolved absolute path (``./m``, ``m``, ``/abs/m`` and a
    symlink to it are one model); a Hub id gives itself, with ``@revision`` appended when a
    revision is given; the hosted name ``jina-embeddings-v3`` gives
    ``jinaai/jina-embeddings-v3``. Loads nothing and never touches the network, so callers
    can compare identities before loading. Idempotent: a canonical id maps to itself.
    Raises ``ModelNotFoundError`` for a path that is not a directory or a name that cannot
    be a Hub id, ``ValueError`` for conflicting or empty revisions.
    """
    url = model_url(model)
    if url is not None:
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to Hub ids; {url!r} is a server URL")
        return url
    return resolve_model_ref(model, revision).canonical_id


def resolve_model_dir(
    model: str | os.PathLike[str] | None,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
) -> Path:
    """The local directory holding ``model``: the directory itself, or its HF cache snapshot."""
    return model_dir_of(resolve_model_ref(model, revision), local_files_only=local_files_only)


def model_dir_of(
    ref: ModelRef, *, local_files_only: bool = False, patterns: list[str] | None = None
) -> Path:
    """The local directory of ``ref``: the directory itself, or its HF cache snapshot (of the
    files matching ``patterns``; None: every file an embedder needs)."""
    if ref.local_dir is not None:
        return ref.local_dir
    assert ref.repo_id is not None
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(
            repo_id=ref.repo_id,
            revision=ref.revision,
            local_files_only=local_files_only,
            allow_patterns=_HUB_PATTERNS if patterns is None else patterns,
        )
    except Exception as exc:  # hub errors differ across huggingface_hub versions
        raise ModelNotFoundError(
            f"model {ref.canonical_id!r} is not in the Hugging Face cache and could not be "
            f"downloaded ({type(exc).__name__}). {_how_to_get(ref.repo_id or '', ref.revision)}"
        ) from exc
    return Path(snapshot)


def read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def read_config(model_dir: Path) -> dict[str, Any]:
    config = model_dir / "config.json"
    if not config.is_file():
        raise ModelNotFoundError(f"{model_dir} has no config.json; it is not a model directory")
    return read_json(config)


def safetensors_files(model_dir: Path) -> list[Path]:
    """The safetensors weight files of a checkpoint; refuses pickle-only checkpoints."""
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index)["weight_map"].values()))
        return [model_dir / shard for shard in shards]
    pickles = [p.name for p in model_dir.iterdir() if p.suffix in _PICKLE_SUFFIXES]
    if pickles:
        raise UnsafeCheckpointError(
            f"{model_dir} only has pickle weights ({', '.join(sorted(pickles))}); loading them "
            "could execute arbitrary code, so they are refused. Convert the checkpoint to "
            "safetensors (e.g. with `safetensors.torch.save_file`) and try again."
        )
    raise ModelNotFoundError(f"{model_dir} has no model.safetensors")


def iter_safetensors(model_dir: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) one tensor at a time, so conversion never holds two copies."""
    from safetensors import safe_open

    for file in safetensors_files(model_dir):
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                yield name, f.get_tensor(name)


def safetensors_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor name of the checkpoint with its shape, read from the file headers only."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in safetensors_files(model_dir):
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def check_tensor_accounting(
    where: str,
    *,
    expected: dict[str, tuple[int, ...] | None],
    present: dict[str, tuple[int, ...] | None],
    unused_ok: dict[str, str],
) -> None:
    """Every tensor the model needs is present with its shape, and every present tensor is
    used, or is listed in ``unused_ok`` (name prefix -> why it is never read).

    Raises ``UnsupportedModelError`` naming the missing, unused and misshapen tensors: a
    model with a weight left at random, or a weight it ignores, gives wrong vectors.
    Shapes of None are not compared.
    """

    def excused(name: str) -> bool:
        return any(name == p or name.startswith(p) for p in unused_ok)

    missing = sorted(n for n in expected if n not in present and not excused(n))
    unused = sorted(n for n in present if n not in expected and not excused(n))
    misshapen = sorted(
        f"{n} {present[n]} (expected {expected[n]})"
        for n in expected
        if n in present and None not in (expected[n], present[n]) and expected[n] != present[n]
    )
    problems = []
    for label, names in (
        ("missing", missing),
        ("unused by the model", unused),
        ("of the wrong shape", misshapen),
    ):
        if names:
            shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
            problems.append(f"{len(names)} tensor(s) {label}: {shown}")
    if problems:
        raise UnsupportedModelError(
            f"{where}: the checkpoint does not match the architecture its config names ("
            + "; ".join(problems)
            + "). Running it would give wrong vectors, so it is refused"
        )
