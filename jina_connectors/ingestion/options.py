"""Every ingest option, checked once: :class:`IngestOptions`, :class:`EmbeddingSettings` and
the bad-record policy :class:`BadRecords`.

``IngestOptions`` holds what a caller chooses without a model (checked in its constructor,
raising :class:`~jina_connectors.errors.OptionError` that names the option);
:meth:`IngestOptions.settings` checks them against the model once and freezes what changes a
vector into ``EmbeddingSettings``. ``ingest``, the Ray engine, ``reembed`` and the CLI all
build one ``IngestOptions`` and run on it; nothing after them checks an option again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

from ..errors import InvalidDocumentError, OptionError
from ..sinks.records import PASSAGE_TASK, CollectionSpec, SinkEmbeddingType

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from embedder_core import LateChunkingOptions

__all__ = [
    "BUILTIN_CHUNKERS",
    "BadRecords",
    "Chunker",
    "EmbeddingSettings",
    "IngestKeywords",
    "IngestOptions",
    "RayOptions",
    "bad_record_logger",
    "positive_int",
    "positive_number",
    "sink_options",
]

# Bad records, one warning each (also listed in IngestReport.errors).
bad_record_logger = logging.getLogger("jina_connectors.ingest.records")

Span = tuple[int, int]
#: A custom chunker: a document's text in, the character spans of its chunks out.
Chunker = Callable[[str], Sequence[Span]]
BUILTIN_CHUNKERS = ("sentences", "tokens")
CUSTOM_CHUNKER = "custom"
ON_ERROR = ("skip", "raise")
EMBEDDING_TYPES = ("float", "ubinary")

#: Field metadata of the options that change a vector: they are part of every document's
#: content hash (through :class:`EmbeddingSettings`), so changing one re-embeds everything.
HASHED: Any = {"hashed": True}


def positive_int(option: str, value: Any, *, optional: bool = False) -> None:
    """Raise :class:`OptionError` unless ``value`` is an int >= 1 (or None, if ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        kind = "a positive integer or None" if optional else "a positive integer"
        raise OptionError(
            option, f"must be {kind}, got {value!r}", value=value, minimum=_minimum(value, 1)
        )


def positive_number(option: str, value: Any) -> None:
    """Raise :class:`OptionError` unless ``value`` is a finite number > 0, or None."""
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise OptionError(option, f"must be a positive number or None, got {value!r}", value=value)


def _minimum(value: Any, minimum: int) -> int | None:
    """``minimum`` when ``value`` is a number below it (the CLI words it "at least")."""
    number = isinstance(value, int) and not isinstance(value, bool)
    return minimum if number and value < minimum else None


def _one_of(option: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        words = " or ".join(repr(c) for c in choices)
        raise OptionError(option, f"must be {words}, got {value!r}", value=value)


class DescribedModel(Protocol):
    """What the model check reads: an ``Embedder``, a ``RemoteEmbedder``, or the
    ``ModelInfo`` of a model not loaded yet."""

    @property
    def dimension(self) -> int | None: ...

    @property
    def tasks(self) -> tuple[str, ...]: ...


def model_name(model: Any) -> str:
    """The canonical model id of an embedder or a ``ModelInfo`` (both say ``model_name``)."""
    return str(model.model_name)


@dataclass(frozen=True)
class EmbeddingSettings:
    """Every setting that changes a document's chunks or vectors, as one frozen value
    (:meth:`IngestOptions.settings` makes it, checked against the model).

    The content hash of every document covers all hashed fields (:meth:`fingerprint`), so a
    change to any of them re-embeds every document. ``model`` is the embedder's canonical
    ``model_name``; ``chunker`` is ``"sentences"``, ``"tokens"`` or ``"custom"`` (a custom
    chunker's spans are hashed per document instead); ``chunk_size`` is None for a custom
    chunker, ``late_chunking_window``/``_overlap`` are None without late chunking (they
    change nothing then).
    """

    model: str
    task: str
    dimensions: int
    embedding_type: SinkEmbeddingType
    late_chunking: bool
    chunker: str
    chunk_size: int | None
    late_chunking_window: int | None
    late_chunking_overlap: int | None
    #: The custom chunker (when ``chunker == "custom"``).
    custom_chunker: Chunker | None = field(default=None, compare=False, repr=False)
    #: Passed as is to the embedder's ``late_chunking_options=`` (when not None).
    late_chunking_options: LateChunkingOptions | None = field(
        default=None, compare=False, repr=False
    )

    @property
    def spec(self) -> CollectionSpec:
        """The collection spec that points written with these settings record."""
        return CollectionSpec(self.model, self.dimensions, self.embedding_type, self.task)

    def fingerprint(self) -> dict[str, Any]:
        """The hashed fields (``model`` and every hashed option of :class:`IngestOptions`),
        as JSON values."""
        return {"model": self.model, **{name: getattr(self, name) for name in _hashed_names()}}


class IngestKeywords(TypedDict, total=False):
    """:class:`IngestOptions`' fields as keyword arguments (``**keywords`` of ``ingest`` and
    the Ray engine), so that type checkers and editors know each one; a test keeps the two
    lists equal."""

    task: str
    dimensions: int | None
    embedding_type: SinkEmbeddingType
    late_chunking: bool
    late_chunking_window: int | None
    late_chunking_overlap: int | None
    late_chunking_options: LateChunkingOptions | None
    chunker: str | Chunker
    chunk_size: int
    batch_size: int
    write_batch_size: int
    max_pending_batches: int
    on_error: Literal["skip", "raise"]
    show_progress: bool
    root: str | os.PathLike[str] | None
    sync: bool


@dataclass(frozen=True)
class IngestOptions:
    """Every ingest option that needs no model, checked when made.

    The fields are the keyword arguments of :func:`~jina_connectors.ingest` (and of the Ray
    engine), which fold into one ``IngestOptions`` (:meth:`of`); pass ``options=`` to reuse
    one. A bad value raises :class:`~jina_connectors.errors.OptionError` naming the field.
    Late chunking's window and overlap are ``late_chunking_window``/``_overlap`` (None: the
    core's defaults); ``late_chunking_options=LateChunkingOptions(...)`` sets both.
    Fields marked hashed change vectors and are part of every document's content hash.
    """

    task: str = field(default=PASSAGE_TASK, metadata=HASHED)
    dimensions: int | None = field(default=None, metadata=HASHED)
    embedding_type: SinkEmbeddingType = field(default="float", metadata=HASHED)
    late_chunking: bool = field(default=True, metadata=HASHED)
    late_chunking_window: int | None = field(default=None, metadata=HASHED)
    late_chunking_overlap: int | None = field(default=None, metadata=HASHED)
    chunker: str | Chunker = field(default="sentences", metadata=HASHED)
    chunk_size: int = field(default=256, metadata=HASHED)
    batch_size: int = 16
    write_batch_size: int = 256
    max_pending_batches: int = 2
    on_error: Literal["skip", "raise"] = "skip"
    show_progress: bool = True
    root: str | os.PathLike[str] | None = None
    sync: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task:
            raise OptionError("task", f"must be a task name, got {self.task!r}", value=self.task)
        positive_int("dimensions", self.dimensions, optional=True)
        _one_of("embedding_type", self.embedding_type, EMBEDDING_TYPES)
        if not isinstance(self.late_chunking, bool):
            raise OptionError("late_chunking", f"must be True or False, got {self.late_chunking!r}")
        positive_int("late_chunking_window", self.late_chunking_window, optional=True)
        overlap = self.late_chunking_overlap
        if overlap is not None and (
            isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0
        ):
            raise OptionError(
                "late_chunking_overlap",
                f"must be an integer of at least 0, got {overlap!r}",
                value=overlap,
                minimum=_minimum(overlap, 0),
            )
        if not self.late_chunking:
            for name in ("late_chunking_window", "late_chunking_overlap"):
                if getattr(self, name) is not None:
                    raise OptionError(
                        name,
                        "(late_chunking_options) applies to late chunking only: drop it, or "
                        "turn late chunking on (late_chunking=True, --late-chunking)",
                    )
        if not (callable(self.chunker) or self.chunker in BUILTIN_CHUNKERS):
            raise OptionError(
                "chunker",
                f"must be 'sentences', 'tokens' or a callable, got {self.chunker!r}",
                value=self.chunker,
            )
        for name in ("chunk_size", "batch_size", "write_batch_size", "max_pending_batches"):
            positive_int(name, getattr(self, name))
        _one_of("on_error", self.on_error, ON_ERROR)

    @classmethod
    def of(
        cls, options: IngestOptions | None = None, /, **keywords: Unpack[IngestKeywords]
    ) -> IngestOptions:
        """``options`` (default: the defaults) with ``keywords`` set: the fields, and
        ``late_chunking_options`` (a ``LateChunkingOptions``) for the window and overlap.
        An unknown keyword raises ``TypeError``, as a function's would."""
        late = keywords.pop("late_chunking_options", None)
        if late is not None:
            from embedder_core import LateChunkingOptions

            if not isinstance(late, LateChunkingOptions):
                raise TypeError(
                    "late_chunking_options must be a LateChunkingOptions, got "
                    f"{type(late).__name__}"
                )
            keywords.setdefault("late_chunking_window", late.window)
            keywords.setdefault("late_chunking_overlap", late.overlap)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(keywords) - names)
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        if options is None:
            return cls(**keywords)
        if not isinstance(options, IngestOptions):
            raise TypeError(f"options must be an IngestOptions, got {type(options).__name__}")
        return dataclasses.replace(options, **keywords) if keywords else options

    @property
    def late_chunking_options(self) -> LateChunkingOptions | None:
        """The core's late-chunking options these fields give; None: its defaults."""
        given = {"window": self.late_chunking_window, "overlap": self.late_chunking_overlap}
        given = {name: value for name, value in given.items() if value is not None}
        if not given:
            return None
        from embedder_core import LateChunkingOptions

        return LateChunkingOptions(**given)

    def check_model(self, model: Any) -> None:
        """The options against ``model`` (an embedder, or a ``ModelInfo`` before loading):
        its tasks, its width (through ``ModelInfo.check_dimensions``, the one owner of that
        rule, Matryoshka included), and whether it can late-chunk. The only model check;
        it loads nothing."""
        from embedder_core import ModelInfo

        info = ModelInfo.of(model)
        if self.task not in info.tasks:
            raise OptionError(
                "task",
                f"must be one of {', '.join(info.tasks)}, got {self.task!r}",
                value=self.task,
            )
        try:
            info.check_dimensions(self.dimensions)
        except ValueError as error:
            reason = str(error).removeprefix("dimensions ")
            raise OptionError("dimensions", f"{reason} (for {info.model_name!r})") from None
        # An embedder may say so itself (a deferred one without loading); else its pooling.
        can_late_chunk = getattr(model, "supports_late_chunking", None)
        if can_late_chunk is None:
            can_late_chunk = info.supports_late_chunking
        if self.late_chunking and not can_late_chunk:
            how = "" if info.pooling in ("mean", "max") else f" ({info.pooling} pooling)"
            raise OptionError(
                "late_chunking",
                f"is not possible with {info.model_name}: it pools one token per text{how}, "
                "so it has no vector per chunk; turn late chunking off "
                "(late_chunking=False, --no-late-chunking)",
            )

    def settings(self, model: Any) -> EmbeddingSettings:
        """:meth:`check_model`, then the frozen settings every document is hashed and
        embedded with."""
        self.check_model(model)
        width = model.dimension
        if width is None:
            raise ValueError(f"the configuration of {model_name(model)} does not give its width")
        custom = callable(self.chunker)
        late = self.late_chunking_options
        if self.late_chunking:
            from embedder_core import LateChunkingOptions

            defaults = late or LateChunkingOptions()
            window, overlap = defaults.window, defaults.overlap
        else:
            window, overlap = None, None
        resolved = {
            "dimensions": self.dimensions or width,
            "chunker": CUSTOM_CHUNKER if custom else str(self.chunker),
            "chunk_size": None if custom else self.chunk_size,
            "late_chunking_window": window,
            "late_chunking_overlap": overlap,
        }
        hashed = {name: resolved.get(name, getattr(self, name)) for name in _hashed_names()}
        return EmbeddingSettings(
            model=model_name(model),
            **hashed,
            custom_chunker=self.chunker if custom else None,  # type: ignore[arg-type]
            late_chunking_options=late,
        )

    def bad_records(self) -> BadRecords:
        """A fresh bad-record policy for one run with these options."""
        return BadRecords(self.on_error)


def sink_options(options: IngestOptions | None, keywords: dict[str, Any]) -> IngestOptions:
    """The options of a run that writes to a sink (``ingest``, ``ingest_dataset``...):
    ``retrieval.passage`` vectors only, so ``task`` is not one of their keywords."""
    if "task" in keywords:
        raise TypeError("unexpected keyword argument 'task'")
    options = IngestOptions.of(options, **keywords)
    if options.task != PASSAGE_TASK:
        raise OptionError(
            "task", f"must be {PASSAGE_TASK!r} for points written to a sink, got {options.task!r}"
        )
    return options


def _hashed_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(IngestOptions) if f.metadata.get("hashed"))


@dataclass(frozen=True)
class RayOptions:
    """The Ray actor pool options (see :func:`jina_connectors.ray.plan_actors`), checked
    when made: ``actors`` a positive integer, ``gpus_per_actor``/``cpus_per_actor``
    positive numbers (or None). Importing it needs no Ray (the CLI checks its flags)."""

    actors: int | None = None
    gpus_per_actor: float | None = None
    cpus_per_actor: float | None = None

    def __post_init__(self) -> None:
        positive_int("actors", self.actors, optional=True)
        positive_number("gpus_per_actor", self.gpus_per_actor)
        positive_number("cpus_per_actor", self.cpus_per_actor)


class BadRecords:
    """What a run does with a bad record: raise it (``on_error="raise"``), or log it once
    (``log``) and keep it in :attr:`errors` (``"skip"``). Thread-safe (the background writer
    reports too) and picklable (Ray actors and write tasks get one each)."""

    def __init__(
        self,
        on_error: str = "skip",
        errors: list[InvalidDocumentError] | None = None,
        *,
        log: bool = True,
    ) -> None:
        _one_of("on_error", on_error, ON_ERROR)
        self.on_error = on_error
        self.errors: list[InvalidDocumentError] = [] if errors is None else errors
        self.log = log
        self._lock = threading.Lock()

    @property
    def raises(self) -> bool:
        return self.on_error == "raise"

    def add(self, error: InvalidDocumentError) -> None:
        if self.raises:
            raise error
        if self.log:
            bad_record_logger.warning("skipped bad record %s", error)
        with self._lock:
            self.errors.append(error)

    __call__ = add

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
