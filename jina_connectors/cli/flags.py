"""The CLI's shared flags: the choices they take, the ``Annotated`` options several
commands share, and :func:`ingest_options`, which turns the ingest flags into the one checked
:class:`~jina_connectors.ingestion.options.IngestOptions` (a bad value names its flag:
:attr:`OptionError.flag <jina_connectors.errors.OptionError.flag>` is ``--`` + the field)."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import OptionError
from .errors import flag_error

if TYPE_CHECKING:
    from ..ingestion.options import IngestOptions


class Database(str, Enum):
    qdrant = "qdrant"
    milvus = "milvus"
    pinecone = "pinecone"


class ChunkerName(str, Enum):
    sentences = "sentences"
    tokens = "tokens"


class VectorType(str, Enum):
    float = "float"
    ubinary = "ubinary"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class Quantization(str, Enum):
    int8 = "int8"


DbOption = Annotated[Database, typer.Option("--db", help="Vector database.", case_sensitive=False)]
CollectionOption = Annotated[
    str, typer.Option("--collection", "-c", help="Collection (Pinecone: index) name.")
]
LocationOption = Annotated[
    str | None,
    typer.Option(
        "--location",
        help=(
            "Qdrant: a folder or a server URL [default: $JINA_CONNECTORS_HOME/qdrant, "
            "JINA_CONNECTORS_HOME defaulting to ~/.local/share/jina-connectors]. Milvus: a "
            "Milvus Lite .db file or a server URI [default: $JINA_CONNECTORS_HOME/milvus.db]. "
            "Pinecone: the API URL [default: Pinecone's; API key from $PINECONE_API_KEY]."
        ),
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Model id or folder [default: $JINA_CONNECTORS_MODEL, else jinaai/jina-embeddings-v3]."
    ),
]
DimensionsOption = Annotated[
    int | None,
    typer.Option(help="Matryoshka dimensions [default: the model's full width]."),
]
QuantizationOption = Annotated[
    Quantization | None,
    typer.Option(
        help="int8: Linear layers in int8 on CPU (faster, near-equal vectors; see the README). "
        "Where int8 is not faster (CUDA, CPUs without AVX2) it warns and runs unquantized.",
        case_sensitive=False,
    ),
]


def ingest_options(ctx: typer.Context, **flags: Any) -> IngestOptions:
    """:class:`IngestOptions` of the flags named as its fields; a bad value is a usage
    error naming the flag (``--`` + the field with ``-``)."""
    from ..ingestion.options import IngestOptions

    try:
        return IngestOptions(**flags)
    except OptionError as error:
        raise flag_error(error, ctx) from None
