"""The peer server: ``POST /v1/classify`` over hot-loaded hub adapters.

A peer runs one base model (:class:`~fednet.inference.engine.AdapterEngine`),
batches concurrent requests (:class:`~fednet.inference.batcher.MicroBatcher`),
registers with the hub (endpoint, base model, adapters served) and sends
heartbeats. Errors are JSON ``{"error": message, "type": name}``:

=====  ==========================================================
400    malformed request (a body that is not UTF-8 or not JSON), empty text
       list or empty text
401    missing or wrong bearer token, when the peer requires one
404    adapter not served by this peer, or unknown to the hub
409    adapter failed verification (tampered blob, bad signature)
413    too many texts or a text over ``max_query_chars``
422    a text that is not valid Unicode (a lone surrogate such as ``"\ud800"``),
       or an adapter unusable here (bad name, other base model, bad head)
502    the hub is unreachable
504    not answered within ``request_timeout_s``
=====  ==========================================================
"""

from __future__ import annotations

import concurrent.futures
import hmac
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from fednet.errors import HubError, IntegrityError, NotFoundError, SignatureError
from fednet.hub.manifest import parse_version
from fednet.inference.batcher import MicroBatcher
from fednet.inference.config import PeerConfig
from fednet.inference.engine import AdapterEngine
from fednet.names import check_name
from fednet.text_input import lone_surrogate_problem, utf8_body_problem

__all__ = ["ClassifyRequest", "create_peer_app"]

logger = logging.getLogger(__name__)


class ClassifyRequest(BaseModel):
    """Texts to classify with one adapter (default: the peer's first)."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(description="texts to classify")
    adapter: str | None = Field(default=None, description="hub adapter name")
    version: int | str = Field(default="latest", description="version number or 'latest'")


class _RefusedError(Exception):
    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": message, "type": kind}, status_code=status)


def _body_error(exc: StarletteHTTPException) -> JSONResponse:
    """The peer's error shape for an HTTP error, naming bytes that are not UTF-8."""
    problem = utf8_body_problem(exc)
    if problem:
        return _error(400, problem, "UnicodeDecodeError")
    return _error(exc.status_code, str(exc.detail), "HTTPException")


def _status_of(exc: Exception) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, SignatureError | IntegrityError):
        return 409
    if isinstance(exc, HubError):
        return 502
    if isinstance(exc, ValueError | TypeError):
        return 422
    return 500


def create_peer_app(
    engine: AdapterEngine,
    batcher: MicroBatcher,
    *,
    peer_id: str,
    adapters: list[str],
    config: PeerConfig | None = None,
    token: str | None = None,
) -> FastAPI:
    """Build a peer's FastAPI application.

    Parameters
    ----------
    engine : AdapterEngine
        Runs the base model and adapters.
    batcher : MicroBatcher
        Batches requests into forward passes.
    peer_id : str
        Identifier reported in answers.
    adapters : list[str]
        Adapters the peer serves; the first is the default.
    config : PeerConfig, optional
        Request limits and timeouts.
    token : str, optional
        When given, ``/v1/classify`` needs ``Authorization: Bearer <token>``.

    Only the adapters in ``adapters`` are served: the peer never loads
    another adapter on a caller's behalf.
    """
    config = config or PeerConfig()
    served = frozenset(adapters)
    app = FastAPI(title=f"fednet peer {peer_id}", version="1", docs_url="/docs")

    @app.exception_handler(_RefusedError)
    async def refused(_: Request, exc: _RefusedError) -> JSONResponse:
        return _error(exc.status, str(exc), exc.kind)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _body_error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        text = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return _error(400, f"invalid request: {text}", "RequestValidationError")

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        """Liveness, base model, adapters served and adapters loaded."""
        return {
            "status": "ok",
            "peer_id": peer_id,
            "base_model": engine.base_model,
            "adapters": adapters,
            "loaded": engine.loaded,
            "base_loads": engine.base_loads,
            "forward_passes": engine.forward_passes,
        }

    @app.post("/v1/classify")
    def classify(request: ClassifyRequest, http: Request) -> dict[str, Any]:
        """Labels and probabilities of ``texts`` under one adapter."""
        started = time.perf_counter()
        if token is not None:
            given = http.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                raise _RefusedError(401, "missing or wrong bearer token", "Unauthorized")
        texts = request.texts
        if not texts:
            raise _RefusedError(400, "`texts` must hold at least one text", "ValueError")
        if len(texts) > config.max_texts:
            raise _RefusedError(
                413, f"{len(texts)} texts exceed the limit of {config.max_texts}", "ValueError"
            )
        for i, text in enumerate(texts):
            problem = lone_surrogate_problem(f"texts[{i}]", text)
            if problem:
                raise _RefusedError(422, problem, "UnicodeEncodeError")
            if not text.strip():
                raise _RefusedError(400, f"`texts[{i}]` is empty", "ValueError")
            if len(text) > config.max_query_chars:
                raise _RefusedError(
                    413,
                    f"`texts[{i}]` has {len(text)} characters; the limit is "
                    f"{config.max_query_chars}",
                    "ValueError",
                )
        name = request.adapter or (adapters[0] if adapters else None)
        if name is None:
            raise _RefusedError(400, "this peer serves no default adapter; name one", "ValueError")
        try:  # a bad name is bad input (422) before it is an unknown one (404)
            check_name("name", name)
        except (TypeError, ValueError) as e:
            raise _RefusedError(422, str(e), "ValueError") from e
        if name not in served:
            raise _RefusedError(
                404,
                f"peer {peer_id} does not serve adapter {name!r}; it serves {sorted(served)}",
                "NotFoundError",
            )
        try:
            version = parse_version(request.version)
        except ValueError as e:
            raise _RefusedError(400, str(e), "ValueError") from e
        future = batcher.submit(texts, name, version)
        try:
            result = future.result(timeout=config.request_timeout_s)
        except concurrent.futures.TimeoutError as e:
            future.cancel()
            raise _RefusedError(
                504, f"not answered within {config.request_timeout_s}s", "TimeoutError"
            ) from e
        except Exception as e:
            raise _RefusedError(_status_of(e), str(e), type(e).__name__) from e
        probs = result.probabilities
        names = result.adapter.label_names
        confidence, index = probs.max(dim=-1)
        return {
            "peer_id": peer_id,
            "adapter": result.adapter.manifest.name,
            "version": result.adapter.manifest.version,
            "task": result.adapter.manifest.task,
            "label_names": list(names),
            "labels": [names[i] for i in index.tolist()],
            "confidences": confidence.tolist(),
            "probabilities": probs.tolist(),
            "batch_requests": result.batch_requests,
            "latency_ms": (time.perf_counter() - started) * 1000.0,
        }

    return app
