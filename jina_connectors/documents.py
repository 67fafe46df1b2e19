"""Documents in: strings, ``{"id", "text", "metadata"}`` records, and ``.txt``/``.md``/``.jsonl``
files and folders, validated one by one (a bad record is reported, never fatal)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

from .errors import InvalidDocumentError

DocumentSource = Union[str, Mapping[str, Any], "os.PathLike[str]", "Document"]
DOCUMENT_SUFFIXES = (".txt", ".md", ".jsonl")
MAX_DOC_ID_CHARS = 1024


@dataclass(frozen=True)
class Document:
    """A document to ingest. ``record`` names where it came from, for error messages."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    record: str = ""


def text_document_id(text: str) -> str:
    """Id of a document given as a bare string: derived from its content."""
    return "text-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _document_from_record(raw: Any, record: str, default_id: str | None) -> Document:
    """Validate one ``{"id", "text", "metadata", ...}`` record; extra keys become metadata."""
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
    return _checked(Document(doc_id, text, {**extra, **metadata}, record))


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


def _files_of(path: Path) -> Iterator[tuple[Path, str]]:
    """``(file, document id prefix)``: a file is named by its file name, the files of a folder
    by their path inside it, so ids stay the same whatever the working directory."""
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
            if file.is_file() and file.suffix.lower() in DOCUMENT_SUFFIXES and not hidden:
                yield file, file.relative_to(path).as_posix()
    else:
        yield path, path.name


def _documents_of_path(path: Path) -> Generator[Document | InvalidDocumentError, None, None]:
    """The documents of a file or folder. A ``.jsonl`` file is read lazily and its handle is
    closed as soon as the generator is closed (``with`` inside a generator)."""
    if not path.exists():
        yield InvalidDocumentError(str(path), "no such file or folder")
        return
    for file, name in _files_of(path):
        suffix = file.suffix.lower()
        if suffix not in DOCUMENT_SUFFIXES:
            yield InvalidDocumentError(
                str(file), f"unsupported file type {suffix!r}; expected .txt, .md or .jsonl"
            )
            continue
        try:
            if suffix == ".jsonl":
                with file.open(encoding="utf-8") as lines:
                    for number, line in enumerate(lines, start=1):
                        if not line.strip():
                            continue
                        record = f"{file}:{number}"
                        try:
                            yield _document_from_record(
                                json.loads(line), record, f"{name}:{number}"
                            )
                        except json.JSONDecodeError as exc:
                            yield InvalidDocumentError(record, f"invalid JSON: {exc.msg}")
                        except InvalidDocumentError as exc:
                            yield exc
            else:
                text = file.read_text(encoding="utf-8")
                try:
                    yield _checked(Document(name, text, {}, str(file)))
                except InvalidDocumentError as exc:
                    yield exc
        except (OSError, UnicodeDecodeError) as exc:
            yield InvalidDocumentError(str(file), f"cannot read: {exc}")


def iter_documents(
    sources: DocumentSource | Iterable[DocumentSource],
) -> Generator[Document | InvalidDocumentError, None, None]:
    """Validated documents, or the error of each bad record in their place (in input order).

    A ``str`` is a document's text (its id derived from the content); a mapping is a
    ``{"id", "text", "metadata"}`` record; a path (``pathlib.Path``) is a ``.txt``/``.md`` file
    (one document, id = file name), a ``.jsonl`` file (one record per line; id defaults to
    ``name:line``) or a folder of those (ids relative to the folder). Duplicate ids are errors.

    Files are read lazily. Close the generator (``close()``, or ``contextlib.closing``) when
    you stop early: that closes the file being read at once, and ``sources`` too when it is a
    generator. :func:`~jina_connectors.pipeline.ingest` always closes it.
    """
    if isinstance(sources, (str, Mapping, os.PathLike, Document)):
        sources = [sources]
    try:
        yield from _validated(sources)
    finally:
        # A generator handed in (``iter_documents(...)`` itself, a generator of the
        # caller's) is closed with this one: a failed ingest must not keep its file open
        # for as long as the traceback lives.
        if isinstance(sources, Generator):
            sources.close()


def _validated(
    sources: Iterable[DocumentSource],
) -> Generator[Document | InvalidDocumentError, None, None]:
    seen: dict[str, str] = {}
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
            items = _documents_of_path(Path(source))
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
