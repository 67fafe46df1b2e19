"""The progress bar of an ingest: input bytes against the known total, moved inside a batch."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1, EmbedderWrapper, dump_qdrant

from jina_connectors.ingest import ingest, iter_documents
from jina_connectors.ingestion.stages import resolve_settings

pytest.importorskip("qdrant_client")

from jina_connectors import QdrantSink

SETTINGS: dict[str, Any] = {"chunk_size": 16, "show_progress": False}


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


@pytest.fixture
def sink() -> Iterator[QdrantSink]:
    with QdrantSink("docs", location=":memory:") as s:
        yield s


def fresh_dump(minilm: Any, corpus: Sequence[Any], **settings: Any) -> dict[str, Any]:
    """What a collection holds after ingesting ``corpus`` once into an empty database."""
    with QdrantSink("docs", location=":memory:") as reference:
        ingest(corpus, reference, model=minilm, **{**SETTINGS, **settings})
        return dump_qdrant(reference.client, "docs")


# -- progress ---------------------------------------------------------------------------


def test_progress_counts_input_bytes_against_the_known_total(
    tmp_path: Path,
    minilm: Any,
    sink: QdrantSink,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bar counts input bytes (files' sizes) of a total known upfront, so it has an ETA;
    a stream shows its rate only; a long batch also shows the core's token bar."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for doc in CORPUS_V1:
        (folder / f"{doc['id']}.md").write_text(doc["text"], encoding="utf-8")
    from tqdm import tqdm

    size = tqdm.format_sizeof(sum(f.stat().st_size for f in folder.iterdir()), "", 1024)

    def last_bar(err: str) -> str:
        return [line for line in err.replace("\r", "\n").splitlines() if "ingest →" in line][-1]

    settings = {**SETTINGS, "show_progress": True}
    ingest([folder], sink, model=minilm, **settings)
    bar = last_bar(capsys.readouterr().err)
    assert "100%" in bar and f" {size}/{size} " in bar and "docs=5" in bar
    assert "tok" not in bar
    ingest([folder], sink, model=minilm, **settings)  # all unchanged: done as well
    assert f" {size}/{size} " in last_bar(capsys.readouterr().err)

    stream = (doc for doc in CORPUS_V1)
    ingest(stream, sink, model=minilm, **settings)
    bar = last_bar(capsys.readouterr().err)
    assert not re.search(r"[0-9.]+[kMG]?/[0-9]", bar) and "B/s" in bar  # no total: a rate

    monkeypatch.setattr("jina_connectors.ingestion.progress.LONG_BATCH_BYTES", 2048)  # 64 KiB: slow
    long = " ".join(f"Sentence {i} talks about rivers and the weather." for i in range(50))
    assert len(long) >= 2048
    ingest([long], sink, model=EmbedderWrapper(minilm), **settings)  # no submit_*: per batch
    err = capsys.readouterr().err
    assert "embedding" in err and "tok" in err  # the core's bar, in tokens, with its total


class ReportingEmbedder:
    """An embedder with the core scheduler's ``submit_documents``: its handle says the
    request runs 400 tokens, and ``on_progress`` reports 100 at a time, twice before the
    handle is returned (the scheduler's thread can be that quick)."""

    def __init__(self, inner: Any, progress: Any) -> None:
        self.inner = inner
        self.progress = progress
        self.seen: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit_documents(self, texts: Any, *, on_progress: Any, **options: Any) -> Any:
        result = self.inner.embed_documents(texts, **options)
        on_progress(100)
        on_progress(100)
        owner = self

        class Pending:
            tokens = 400

            def result(self) -> Any:
                owner.seen.append(owner.progress.done_bytes)
                for _ in range(2):
                    on_progress(100)
                    owner.seen.append(owner.progress.done_bytes)
                return result

            def cancel(self) -> bool:
                return False

        return Pending()


def test_token_reports_move_the_bar_inside_a_batch(minilm: Any) -> None:
    from jina_connectors.ingestion.progress import IngestProgress
    from jina_connectors.ingestion.stages import embed_records, prepare_document

    settings = resolve_settings(minilm, chunk_size=16)
    prepared = [prepare_document(d, settings) for d in iter_documents(CORPUS_V1)]  # type: ignore[arg-type]
    progress = IngestProgress(None, description="test", enabled=False)
    reporting = ReportingEmbedder(minilm, progress)
    with progress.embedding(1000) as batch:
        records = embed_records(reporting, settings, prepared, progress=batch)
    # 200, 300 and 400 of 400 tokens: 95% of the batch at most until it is done.
    assert reporting.seen == [475, 712, 950] and progress.done_bytes == 1000
    plain = embed_records(minilm, settings, prepared)
    assert [[r.id for r in doc] for doc in records] == [[r.id for r in doc] for doc in plain]
    for ours, theirs in zip(records, plain, strict=True):
        np.testing.assert_allclose(
            np.stack([r.vector for r in ours]), np.stack([r.vector for r in theirs]), atol=1e-6
        )


def test_the_bar_keeps_moving_after_a_burst(capsys: pytest.CaptureFixture[str]) -> None:
    """One big batch then small ones: every small one past the half-second interval redraws
    the bar (tqdm's dynamic miniters would wait for another burst's worth of bytes)."""
    import time

    from jina_connectors.ingestion.progress import IngestProgress

    progress = IngestProgress(100_000, description="ingest", enabled=True)
    time.sleep(0.55)
    progress.done(50_000)
    for _ in range(3):
        time.sleep(0.55)
        progress.done(3_000)
    shown = capsys.readouterr().err  # before close(), which draws the last state anyway
    progress.close(complete=False)
    assert "53%" in shown and "56%" in shown, shown
