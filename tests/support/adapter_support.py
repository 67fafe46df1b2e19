"""Support for the LlamaIndex and Haystack adapter tests.

Real multi-paragraph documents and questions with known answers: the Universal Declaration of
Human Rights (English) in three documents of ten articles each, one paragraph per article,
plus a State of the Union address as an unrelated document. Each question names a phrase
that only the article answering it contains. And a check that async code leaves the event
loop free.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class SourceText:
    doc_id: str
    text: str


@dataclass(frozen=True)
class Question:
    text: str
    answer_phrase: str  # appears in the answering article only


QUESTIONS = (
    Question("Can someone fleeing persecution find refuge in another country?", "asylum"),
    Question("Is it allowed to hold people as slaves?", "slavery"),
    Question("Do workers have a right to rest and paid time off?", "periodic holidays with pay"),
    Question("Who is free to marry and start a family?", "marry and to found a family"),
)

SOTU_ID = "1932_herbert_hoover_r"  # the shortest address, 980 words


def load_corpus(data_dir: Path) -> list[SourceText]:
    """Four documents: UDHR articles 1-10, 11-20, 21-30, and a SOTU address."""
    udhr = json.loads((data_dir / "udhr_parallel_10lang.json").read_text(encoding="utf-8"))
    articles = udhr["eng"]
    documents = []
    for first in (1, 11, 21):
        paragraphs = [
            f"Article {n}. " + " ".join(articles[str(n)]) for n in range(first, first + 10)
        ]
        documents.append(SourceText(f"udhr-{first}-{first + 9}", "\n\n".join(paragraphs)))
    with (data_dir / "sotu_speeches.jsonl").open(encoding="utf-8") as lines:
        speech = next(row for row in map(json.loads, lines) if row["id"] == SOTU_ID)
    documents.append(SourceText(SOTU_ID, speech["text"]))
    return documents


def run_counting_ticks(coroutine: Coroutine[Any, Any, T]) -> tuple[T, int]:
    """Run ``coroutine`` beside a task that wakes every millisecond; return the result and how
    often that task ran meanwhile. Code that blocks the event loop lets it run hardly at all."""

    async def main() -> tuple[T, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        before = ticks
        result = await coroutine
        during = ticks - before
        done.set()
        await task
        return result, during

    return asyncio.run(main())
