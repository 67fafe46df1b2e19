"""``jina-connectors serve``: the model, the reranker, the limits and the port checked
before the web stack and torch are imported (seconds), then the server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .errors import CommandError
from .flags import QuantizationOption
from .models import inspect_model
from .search import check_reranker


def serve(
    model: Annotated[
        str | None,
        typer.Option(
            help="Model id or folder [default: $JINA_CONNECTORS_MODEL, else "
            "jinaai/jina-embeddings-v3]."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server (use API keys).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8080,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Accept this key as 'Authorization: Bearer KEY' (repeatable; also "
            "$JINA_CONNECTORS_API_KEYS, comma-separated). Without keys, no auth.",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 [default: cuda if available].")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="float32, bfloat16, float16 [default: per device].")
    ] = None,
    max_batch_tokens: Annotated[
        int | None, typer.Option(min=1, help="Tokens per forward batch [default: per device].")
    ] = None,
    max_queued_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="Answer 429 when the queue would hold more tokens [no limit]."),
    ] = None,
    quantization: QuantizationOption = None,
    served_model_name: Annotated[
        list[str] | None,
        typer.Option(
            help="Name in /v1/models; repeat it for aliases [default: the Hub id, or the "
            "folder's name (its parent's when it is called 'model')]."
        ),
    ] = None,
    expose_model_path: Annotated[
        bool, typer.Option(help="Show the model's folder in answers (hidden by default).")
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Answer only this Host header name (repeatable; '*': any) [default: "
            "localhost names when --host is loopback, else any]."
        ),
    ] = None,
    max_inputs: Annotated[int, typer.Option(min=1, help="Inputs per request.")] = 2048,
    max_spans: Annotated[int, typer.Option(min=1, help="Spans per embed-spans request.")] = 8192,
    max_request_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body (413 above).")
    ] = 2 * 1024 * 1024,
    max_admitted_bytes: Annotated[
        int,
        typer.Option(min=1, help="Bodies plus answers of requests in progress (429 above)."),
    ] = 32 * 1024 * 1024,
    drain_seconds: Annotated[
        float, typer.Option(min=0, help="On SIGTERM, time to finish requests (then 503).")
    ] = 25.0,
    header_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds to send a request's headers.")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds to send a request's body (408 past).")
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    reranker: Annotated[
        str | None,
        typer.Option(help="Also serve this reranker at /v1/rerank (folder, Hub id, hosted name)."),
    ] = None,
) -> None:
    """Serve the model over HTTP: Jina- and OpenAI-compatible /v1/embeddings (docs at /docs)."""
    # The event loop and tokenizer threads need the cores while the model runs: OpenMP
    # threads that spin between operations starve them (measured on a busy 2-core machine:
    # idle query 714 -> 40 ms, 64-client load 4x faster). Read when torch loads: set first.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    check_serve_models(model, reranker)
    if max_admitted_bytes < max_request_bytes:
        raise CommandError(
            f"--max-admitted-bytes ({max_admitted_bytes}) must be at least --max-request-bytes "
            f"({max_request_bytes}): a request of the largest size must fit the budget"
        )
    _check_serve(model, host, port)
    try:
        from ..server import ModelLoadError, run_server
    except ImportError as error:
        raise CommandError(
            f"serve needs the server extra: pip install 'jina-connectors[server]' ({error})"
        ) from error
    try:
        run_server(
            model,
            host=host,
            port=port,
            api_keys=api_key or [],
            device=device,
            dtype=dtype,
            max_batch_tokens=max_batch_tokens,
            max_queued_tokens=max_queued_tokens,
            quantization=None if quantization is None else quantization.value,
            served_model_name=served_model_name,
            expose_model_path=expose_model_path,
            allowed_hosts=allowed_host,
            max_inputs=max_inputs,
            max_spans=max_spans,
            max_request_bytes=max_request_bytes,
            max_admitted_bytes=max_admitted_bytes,
            drain_seconds=drain_seconds,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            log_level=log_level,
            reranker=reranker,
        )
    except ModelLoadError as error:
        raise CommandError(str(error)) from error


def _check_serve(model: str | None, host: str, port: int) -> None:
    """The model's configuration and the port, before the web stack and torch are imported
    (seconds), each refused in one line."""
    import errno
    import socket

    inspect_model(model)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise CommandError(f"--host {host}: cannot resolve it ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"--port {port}: {host}:{port} is in use by another process; pass "
                    "another --port (0: any free port), or stop that process"
                ) from None
            raise CommandError(f"cannot listen on {host}:{port}: {error.strerror}") from None


def check_serve_models(model: str | None, reranker: str | None) -> None:
    """A reranker folder as --model is refused (it would give wrong vectors), pointing to
    --reranker; an embedding model's folder as --reranker is refused too."""
    from embedder_core import RerankerCheckpointError

    if model is not None and Path(model).expanduser().is_dir():
        from embedder_core.model_info import check_not_reranker

        try:
            check_not_reranker(Path(model).expanduser())
        except RerankerCheckpointError:
            raise typer.BadParameter(
                f"{model} is a reranker, not an embedding model; serve it with --reranker "
                f"{model} (and an embedding model as --model)",
                param_hint="'--model'",
            ) from None
    if reranker is not None:
        check_reranker(reranker, "'--reranker'")
