"""Documents in: strings, ``{"id", "text", "metadata"}`` records, and ``.txt``/``.md``/``.jsonl``
files and folders, validated one by one (a bad record is reported, never fatal).

Document ids (what makes re-runs update instead of duplicate):

- A ``.txt``/``.md`` file: its canonical path, the same whatever path reached it (relative,
  absolute, ``./``, ``..``, through a symlink): the resolved absolute path in POSIX form,
  ``/home/me/notes/a.md``. With ``root``, the resolved path relative to the resolved root
  instead, ``notes/a.md``, so that ids survive moving the root or ingesting the same tree on
  another machine; a file outside the root is a :class:`SourcePathError`.
- A line of a ``.jsonl`` file: the record's own ``id`` when it has one (a user-declared
  identity: the same id anywhere is the same document), else ``<file id>:<text hash>``, the
  first 16 hex digits of the SHA-256 of its ``text``; the n-th line of the file with the
  same text (n >= 2) gets ``<file id>:<text hash>.<n>``. So an id-less line keeps its id
  when lines before it are added, removed or moved, and a re-run re-embeds only the lines
  whose text changed (a line number would shift every line after an edit).
- A dict record: its ``id``, else a hash of its text; a bare string: a hash of its text
  (``text-<sha256 prefix>``).

Every document read from a file records its file id in the metadata key ``source`` (a
``.jsonl`` record's own ``source`` wins), so a search can be filtered to one file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

from ..errors import EmptyDocumentError, InvalidDocumentError, SourcePathError

DocumentSource = Union[str, Mapping[str, Any], "os.PathLike[str]", "Document"]
DOCUMENT_SUFFIXES = (".txt", ".md", ".jsonl")
MAX_DOC_ID_CHARS = 1024
#: The metadata key that names the file a document was read from.
SOURCE_KEY = "source"


@dataclass(frozen=True)
class Document:
    """A document to ingest. ``record`` names where it came from, for error messages;
    ``size`` is how many input bytes it stands for (its file, or its ``.jsonl`` line), for
    progress (0: unknown; the UTF-8 length of its text is used)."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    record: str = ""
    size: int = field(default=0, compare=False)

    @property
    def input_bytes(self) -> int:
        return self.size or len(self.text.encode("utf-8", "surrogatepass"))


def text_document_id(text: str) -> str:
    """Id of a document given as a bare string: derived from its content."""
    return "text-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _line_key(text: str) -> str:
    """The id part of an id-less ``.jsonl`` line (16 hex digits of its text's SHA-256)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _document_from_record(
    raw: Any,
    record: str,
    default_id: str | None,
    defaults: Mapping[str, Any] | None = None,
) -> Document:
    """Validate one ``{"id", "text", "metadata", ...}`` record; extra keys become metadata
    (over ``defaults``)."""
    if not isinstance(raw, Mapping):
        raise InvalidDocumentError(record, f"expected an object, got {type(raw).__name__}")
    if "text" not in raw:
        raise InvalidDocumentError(record, "missing 'text'")
    text = raw["text"]
    if not isinstance(text, str):
        raise InvalidDocumentError(record, f"'text' must be a string, got {type(text).__name__}")
    doc_id = raw.get("id", default_id)
    if doc_id is None:
        doc_id = text_document_id(text)
    metadata = raw.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise InvalidDocumentError(
            record, f"'metadata' must be an object, got {type(metadata).__name__}"
        )
    extra = {k: v for k, v in raw.items() if k not in ("id", "text", "metadata")}
    return _checked(Document(doc_id, text, {**(defaults or {}), **extra, **metadata}, record))


def _checked(doc: Document) -> Document:
    record = doc.record
    if not isinstance(doc.id, str):
        raise InvalidDocumentError(record, f"'id' must be a string, got {type(doc.id).__name__}")
    if not doc.id.strip():
        raise InvalidDocumentError(record, "'id' is empty")
    if len(doc.id) > MAX_DOC_ID_CHARS:
        raise InvalidDocumentError(record, f"'id' is longer than {MAX_DOC_ID_CHARS} characters")
    control = next((c for c in doc.id if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if control is not None:  # databases' filter languages cannot all match them
        raise InvalidDocumentError(
            record, f"'id' contains the control character U+{ord(control):04X}"
        )
    if not isinstance(doc.text, str):
        raise InvalidDocumentError(
            record, f"'text' must be a string, got {type(doc.text).__name__}"
        )
    if not doc.text.strip():
        raise InvalidDocumentError(record, "'text' is empty")
    for key in doc.metadata:
        if not isinstance(key, str):
            raise InvalidDocumentError(record, f"metadata keys must be strings, got {key!r}")
    try:
        json.dumps(dict(doc.metadata), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDocumentError(record, f"metadata is not JSON-serializable: {exc}") from None
    return doc


def file_id(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """The id of a file or folder: its resolved absolute path in POSIX form, or with ``root``
    its resolved path relative to the resolved root (``"."`` for the root itself). Raises
    :class:`SourcePathError` for a path outside ``root``."""
    resolved = Path(path).resolve()
    if root is None:
        return resolved.as_posix()
    resolved_root = Path(root).resolve()
    if not resolved.is_relative_to(resolved_root):
        raise SourcePathError(
            str(path),
            f"lies outside the root {str(root)!r} ({resolved_root}) that ids are relative to "
            "(symlinks are followed); give a root that contains it, or no root",
        )
    return resolved.relative_to(resolved_root).as_posix()


def file_id_spellings(path: str | os.PathLike[str]) -> list[str]:
    """Every id a file can get: its absolute id, then its id relative to each folder above
    it, nearest last (``/w/notes/a.md``: ``/w/notes/a.md``, ``w/notes/a.md``,
    ``notes/a.md``, ``a.md``)."""
    resolved = Path(path).resolve()
    parts = resolved.parts[1:]  # without the anchor
    return [resolved.as_posix(), *("/".join(parts[i:]) for i in range(len(parts)))]


def document_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The ``.txt``/``.md``/``.jsonl`` files that ``paths`` (files and folders) hold, in the
    order they are read; paths that do not exist are left out."""
    for path in paths:
        source = Path(path)
        if source.exists():
            yield from _files_of(source)


def sync_scope(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> tuple[str, re.Pattern[str]] | None:
    """The ids that documents read from ``path`` get from the path itself (not from a record's
    own ``id``), as ``(prefix, pattern)``: every such id starts with ``prefix`` and fully
    matches ``pattern``. A folder owns the ids under it (with ``root``, the root itself owns
    every id); a ``.jsonl`` file owns the ids of its id-less lines, ``<file id>:<text
    hash>[.<n>]`` (and ``<file id>:<line>``, the scheme of earlier versions, so that a sync
    replaces those); a ``.txt``/``.md`` file owns its own id (deleted by a sync when the
    file is now empty)."""
    source = Path(path)
    id = file_id(source, root)
    if source.is_dir():
        prefix = "" if id == "." else id + "/"
        return prefix, re.compile(re.escape(prefix) + ".*", re.DOTALL)
    if source.suffix.lower() == ".jsonl":
        return id + ":", re.compile(re.escape(id) + r":(?:[0-9]+|[0-9a-f]{16}(?:\.[0-9]+)?)")
    return id, re.compile(re.escape(id))


def input_size(sources: object) -> int | None:
    """The input bytes of ``sources`` when known upfront (paths: their files' sizes; texts and
    records of a list: their texts' UTF-8 lengths); None for a stream (a generator)."""
    items: list[Any]
    if isinstance(sources, CheckedSources):
        sources = sources.documents
    if isinstance(sources, (str, Mapping, os.PathLike, Document)):
        items = [sources]
    elif isinstance(sources, (list, tuple)):
        items = list(sources)
    else:
        return None
    total = 0
    seen: set[Path] = set()
    for item in items:
        if isinstance(item, os.PathLike):
            path = Path(item)
            for file in _files_of(path) if path.exists() else ():
                resolved = file.resolve()
                if resolved not in seen and file.is_file():
                    seen.add(resolved)
                    total += file.stat().st_size
        elif isinstance(item, Document):
            total += item.input_bytes
        elif isinstance(item, str):
            total += len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
            total += len(item["text"].encode("utf-8", "surrogatepass"))
    return total


#: The ids a path owns for ``sync=True``: (prefix they start with, pattern they fully match).
SyncScope = tuple[str, re.Pattern[str]]


@dataclass(frozen=True)
class CheckedSources:
    """Documents whose given paths were checked once (:func:`check_sources`), with the
    ``root`` their ids are relative to and, for a sync, the scopes it deletes in.
    :func:`iter_documents`, ``ingest`` and the Ray engine read them without checking those
    paths again (a path a stream yields is checked when it is reached)."""

    documents: Any
    root: Path | None = None
    #: With ``sync=True``: the ids each given path owns (:func:`sync_scope`); else None.
    scopes: tuple[SyncScope, ...] | None = None
    checked: frozenset[str] = frozenset()


def given_paths(documents: object) -> list[os.PathLike[str]]:
    """The paths among ``documents`` that can be checked before the run (not a stream's)."""
    if isinstance(documents, CheckedSources):
        documents = documents.documents
    if isinstance(documents, os.PathLike):
        return [documents]
    if isinstance(documents, (list, tuple)):
        return [d for d in documents if isinstance(d, os.PathLike)]
    return []


def check_sources(
    documents: object, *, root: str | os.PathLike[str] | None = None, sync: bool = False
) -> CheckedSources:
    """Check the paths among ``documents`` once, before anything is read or written
    (:class:`SourcePathError`); with ``sync``, also the scopes whose unseen documents the
    run deletes after it (``documents`` must then be paths: ``ValueError``). Sources
    checked already with the same ``root`` (and scopes, for a sync) come back as they are."""
    root_path = None if root is None else Path(root)
    if isinstance(documents, CheckedSources):
        same_root = root is None or root_path == documents.root
        if same_root and (not sync or documents.scopes is not None):
            return documents
        root_path = root_path if root is not None else documents.root
        documents = documents.documents
    paths = given_paths(documents)
    not_all_paths = isinstance(documents, (list, tuple)) and len(paths) != len(documents)
    if sync and (not paths or not_all_paths):
        raise ValueError(
            "sync=True needs documents given as paths (a Path, or a list of Paths of files "
            "and folders): only then is it known which stored documents they own"
        )
    for path in paths:
        check_source_path(path, root_path)
    scopes = None
    if sync:
        scopes = tuple(
            scope for scope in (sync_scope(path, root_path) for path in paths) if scope is not None
        )
    return CheckedSources(documents, root_path, scopes, frozenset(os.fspath(p) for p in paths))


def check_source_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> None:
    """Raise :class:`SourcePathError` unless ``path`` is a folder or a ``.txt``/``.md``/
    ``.jsonl`` file (inside ``root`` when given)."""
    source = Path(path)
    if not source.exists():
        raise SourcePathError(str(path), "no such file or folder")
    if not source.is_dir() and source.suffix.lower() not in DOCUMENT_SUFFIXES:
        raise SourcePathError(
            str(path), f"unsupported file type {source.suffix!r}; expected .txt, .md or .jsonl"
        )
    if root is not None:
        if not Path(root).is_dir():
            raise SourcePathError(str(root), "the root is not a folder")
        file_id(source, root)


def _files_of(path: Path) -> Iterator[Path]:
    """The document files of a file or folder (a folder's in sorted order, hidden ones and
    other types skipped)."""
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
            if file.is_file() and file.suffix.lower() in DOCUMENT_SUFFIXES and not hidden:
                yield file
    else:
        yield path


def _documents_of_path(
    path: Path, root: Path | None, seen_files: set[Path], *, checked: bool = False
) -> Generator[Document | InvalidDocumentError, None, None]:
    """The documents of a file or folder; a file already read in this run (reached again
    through another path) is skipped. A ``.jsonl`` file is read lazily and its handle is
    closed as soon as the generator is closed (``with`` inside a generator). ``checked``:
    :func:`check_sources` checked ``path`` (else it is checked here, when reached)."""
    if not checked:
        check_source_path(path, root)
    for file in _files_of(path):
        resolved = file.resolve()
        if resolved in seen_files:
            continue
        seen_files.add(resolved)
        try:
            name = file_id(file, root)
        except SourcePathError as exc:  # a symlink in the folder that leads out of the root
            yield InvalidDocumentError(str(file), exc.reason)
            continue
        source = {SOURCE_KEY: name}
        try:
            if file.suffix.lower() == ".jsonl":
                yield from _documents_of_jsonl(file, name, source)
            else:
                size = file.stat().st_size
                text = file.read_text(encoding="utf-8")
                if not text.strip():
                    yield EmptyDocumentError(str(file), "is empty", source_id=name)
                    continue
                try:
                    yield _checked(Document(name, text, source, str(file), size))
                except InvalidDocumentError as exc:
                    exc.source_id = name
                    yield exc
        except (OSError, UnicodeDecodeError) as exc:
            yield InvalidDocumentError(str(file), f"cannot read: {exc}", source_id=name)


def _documents_of_jsonl(
    file: Path, name: str, source: Mapping[str, Any]
) -> Generator[Document | InvalidDocumentError, None, None]:
    """The records of a ``.jsonl`` file, id-less ones keyed by their text (module docstring)."""
    repeats: dict[str, int] = {}  # text key -> lines of this file with that text so far
    with file.open(encoding="utf-8", newline="") as lines:
        blank = 0  # bytes of blank lines, counted with the next record
        for number, line in enumerate(lines, start=1):
            size = blank + len(line.encode("utf-8", "surrogatepass"))
            if not line.strip():
                blank = size
                continue
            blank = 0
            record = f"{file}:{number}"
            try:
                raw = json.loads(line)
                default_id = None
                text = raw.get("text") if isinstance(raw, Mapping) else None
                if isinstance(text, str) and "id" not in raw:
                    key = _line_key(text)
                    repeats[key] = seen = repeats.get(key, 0) + 1
                    default_id = f"{name}:{key}" if seen == 1 else f"{name}:{key}.{seen}"
                document = _document_from_record(raw, record, default_id, source)
                yield replace(document, size=size)
            except json.JSONDecodeError as exc:
                yield InvalidDocumentError(record, f"invalid JSON: {exc.msg}", source_id=name)
            except InvalidDocumentError as exc:
                exc.source_id = name
                yield exc


def iter_documents(
    sources: DocumentSource | Iterable[DocumentSource] | CheckedSources,
    *,
    root: str | os.PathLike[str] | None = None,
) -> Generator[Document | InvalidDocumentError, None, None]:
    """Validated documents, or the error of each bad record in their place (in input order).

    A ``str`` is a document's text (its id derived from the content); a mapping is a
    ``{"id", "text", "metadata"}`` record; a path (``pathlib.Path``) is a ``.txt``/``.md`` file
    (one document), a ``.jsonl`` file (one record per line) or a folder of those. Ids follow
    the scheme of this module's docstring (``root``: make file ids relative to it). A file
    reached twice (``docs`` and ``docs/sub``, a symlink) is read once; other duplicate ids are
    bad records. A path that does not exist, is not a document file or folder, or lies
    outside ``root`` raises :class:`SourcePathError` when it is reached, unless
    :func:`check_sources` checked it (``sources`` is its :class:`CheckedSources`, whose
    ``root`` applies).

    Files are read lazily. Close the generator (``close()``, or ``contextlib.closing``) when
    you stop early: that closes the file being read at once, and ``sources`` too when it is a
    generator. :func:`~jina_connectors.ingestion.run.ingest` always closes it.
    """
    checked: frozenset[str] = frozenset()
    if isinstance(sources, CheckedSources):
        sources = check_sources(sources, root=root)
        root, checked, sources = sources.root, sources.checked, sources.documents
    if isinstance(sources, (str, Mapping, os.PathLike, Document)):
        sources = [sources]
    try:
        yield from _validated(sources, None if root is None else Path(root), checked)
    finally:
        # A generator handed in (``iter_documents(...)`` itself, a generator of the
        # caller's) is closed with this one: a failed ingest must not keep its file open
        # for as long as the traceback lives.
        if isinstance(sources, Generator):
            sources.close()


def _validated(
    sources: Iterable[DocumentSource], root: Path | None, checked: frozenset[str]
) -> Generator[Document | InvalidDocumentError, None, None]:
    seen: dict[str, str] = {}
    seen_files: set[Path] = set()
    for index, source in enumerate(sources):
        record = f"documents[{index}]"
        items: Iterable[Document | InvalidDocumentError]
        if isinstance(source, Document):
            items = [_guarded(_checked, replace(source, record=source.record or record))]
        elif isinstance(source, str):
            items = [_guarded(_checked, Document(text_document_id(source), source, {}, record))]
        elif isinstance(source, Mapping):
            items = [_guarded(_document_from_record, source, record, None)]
        elif isinstance(source, os.PathLike):
            items = _documents_of_path(
                Path(source), root, seen_files, checked=os.fspath(source) in checked
            )
        else:
            items = [InvalidDocumentError(record, f"unsupported type {type(source).__name__}")]
        try:
            for item in items:
                if isinstance(item, Document):
                    first = seen.get(item.id)
                    if first is not None:
                        item = InvalidDocumentError(
                            item.record, f"duplicate document id {item.id!r} (first at {first})"
                        )
                    else:
                        seen[item.id] = item.record
                yield item
        finally:
            # Closing early closes the file being read now, not at garbage collection.
            if isinstance(items, Generator):
                items.close()


def _guarded(make: Callable[..., Document], *args: Any) -> Document | InvalidDocumentError:
    try:
        return make(*args)
    except InvalidDocumentError as exc:
        return exc
