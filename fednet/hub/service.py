"""HTTP service exposing a :class:`HubStore` (FastAPI; OpenAPI docs at ``/docs``).

Every write needs ``Authorization: Bearer <token>`` with a scope: ``publish``
for adapters, ``heartbeat`` for peer registrations and heartbeats. Tokens are
made with ``fednet hub token create`` and the hub keeps only their sha256
(:mod:`fednet.hub.tokens`); there is no default token. Reads are public unless
``public_reads=False`` (or a ``read_token`` is given), then they need the
``read`` scope. A token alone is not enough to write: manifests, peer
registrations and heartbeats must also be signed by their owner's key, and a
name or peer id stays bound to the key that first claimed it. Every error is
JSON ``{"error": message, "type": name}``:

=====  ==========================================================
400    malformed request (a body that is not UTF-8, bad JSON, base64 or version)
401    missing bearer token
403    wrong token or scope, a key not bound to the name, owner or peer
404    unknown adapter, version, file, peer or route
409    stored data failed verification (tampered blob or manifest)
413    upload larger than ``max_upload_bytes``
422    invalid manifest or fields (a string with a lone surrogate), bad
       signature, hash mismatch
=====  ==========================================================
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fednet.errors import HubError, IntegrityError, NotFoundError, SignatureError, UntrustedKeyError
from fednet.hub.manifest import Manifest, VersionSpec, check_name, parse_version
from fednet.hub.peers import SignedPeerRequest
from fednet.hub.store import HubStore
from fednet.hub.tokens import SCOPES
from fednet.text_input import lone_surrogate_problems, utf8_body_problem

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "create_app", "serve"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_BYTES = 256 * 1024 * 1024
"""Largest request body accepted by default (256 MiB)."""

_Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


class ApiError(Exception):
    """An error with a chosen HTTP status, rendered as ``{"error", "type"}``."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.headers = headers


class _TextRequest(BaseModel):
    """A request body whose strings must all be valid Unicode (no lone surrogates)."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        problems = lone_surrogate_problems(data)
        if problems:
            raise ValueError("; ".join(problems[:5]))
        return data


class PublishRequest(_TextRequest):
    """A signed manifest and its files, each base64-encoded."""

    model_config = ConfigDict(extra="forbid")
    manifest: dict[str, Any]
    files: dict[str, str] = Field(description="file name -> base64 of its bytes")


class PeerRequest(_TextRequest):
    """A peer registration or heartbeat signed by the peer owner's key."""

    model_config = ConfigDict(extra="forbid")
    action: str
    peer_id: str
    owner: str
    public_key: str
    timestamp: float
    signature: str
    endpoint: str = ""
    base_model: str = ""
    adapters: list[str] = Field(default_factory=list)


class _UploadLimit:
    """ASGI middleware answering 413 to request bodies over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(send, length.decode("latin-1"))
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._reject(send, f"more than {total}")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, send: Send, size: str) -> None:
        payload = {
            "error": f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes",
            "type": "PayloadTooLarge",
        }
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _error(
    status: int, message: str, kind: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "type": kind}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, str(exc), exc.kind, exc.headers)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, str(exc), type(exc).__name__)

    @app.exception_handler(HubError)
    async def hub_error(_: Request, exc: HubError) -> JSONResponse:
        logger.warning("hub verification failed: %s", exc)
        return _error(409, str(exc), type(exc).__name__)

    @app.exception_handler(ValueError)
    @app.exception_handler(TypeError)
    async def bad_value(_: Request, exc: Exception) -> JSONResponse:
        return _error(422, str(exc), type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        text = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors
        )
        return _error(status, f"invalid request: {text}", "RequestValidationError")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem = utf8_body_problem(exc)
        if problem:
            return _error(400, problem, "UnicodeDecodeError")
        return _error(exc.status_code, str(exc.detail), "HTTPException", exc.headers)


def _version(text: str) -> VersionSpec:
    try:
        return parse_version(text)
    except ValueError as e:
        raise ApiError(400, str(e), "ValueError") from e


def create_app(
    store: HubStore,
    *,
    write_token: str | None = None,
    read_token: str | None = None,
    public_reads: bool | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> FastAPI:
    """Build the hub's FastAPI application around ``store``.

    Parameters
    ----------
    store : HubStore
        The store to serve; its :attr:`~HubStore.tokens` authorize requests.
    write_token : str, optional
        An extra token, held in memory only, with every scope.
    read_token : str, optional
        An extra token with the ``read`` scope; giving it makes reads private.
    public_reads : bool, optional
        Whether reads need no token (default: yes, unless ``read_token``).
    max_upload_bytes : int
        Request bodies larger than this get 413.
    """
    if not isinstance(store, HubStore):
        raise TypeError(f"`store` must be a HubStore, got {type(store).__name__}")
    for key, value in (("write_token", write_token), ("read_token", read_token)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"`{key}` must be a non-empty string or None")
    if public_reads is None:
        public_reads = read_token is None
    extra: dict[str, frozenset[str]] = {}
    if write_token:
        extra[write_token] = frozenset(SCOPES)
    if read_token:
        extra[read_token] = extra.get(read_token, frozenset()) | {"read"}
    if isinstance(max_upload_bytes, bool) or not isinstance(max_upload_bytes, int):
        raise TypeError(f"`max_upload_bytes` must be an int, got {max_upload_bytes!r}")
    if max_upload_bytes <= 0:
        raise ValueError(f"`max_upload_bytes` must be > 0, got {max_upload_bytes!r}")

    app = FastAPI(title="fednet hub", version="1", docs_url="/docs")
    app.add_middleware(_UploadLimit, max_bytes=max_upload_bytes)
    _install_error_handlers(app)

    def _authorize(creds: HTTPAuthorizationCredentials | None, scope: str) -> None:
        if creds is None:
            raise ApiError(
                401,
                f"missing bearer token (this needs a token with the {scope!r} scope)",
                "Unauthorized",
                {"WWW-Authenticate": "Bearer"},
            )
        given = creds.credentials
        scopes = frozenset[str]()
        for token, token_scopes in extra.items():
            if hmac.compare_digest(given.encode(), token.encode()):
                scopes = token_scopes
        scopes = scopes | store.tokens.scopes(given)
        if scope not in scopes:
            raise ApiError(403, f"bearer token does not have the {scope!r} scope", "Forbidden")

    def require_publish(creds: _Credentials) -> None:
        _authorize(creds, "publish")

    def require_heartbeat(creds: _Credentials) -> None:
        _authorize(creds, "heartbeat")

    def require_read(creds: _Credentials) -> None:
        if not public_reads:
            _authorize(creds, "read")

    reads = [Depends(require_read)]
    writes = [Depends(require_publish)]
    peer_writes = [Depends(require_heartbeat)]

    @app.get("/v1/health", tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness check; always public."""
        return {"status": "ok"}

    @app.get("/v1/adapters", dependencies=reads, tags=["adapters"])
    def list_adapters() -> dict[str, Any]:
        """The latest manifest of every adapter."""
        return {"adapters": [m.to_dict() for m in store.list()]}

    @app.get("/v1/adapters/{name}", dependencies=reads, tags=["adapters"])
    def list_versions(name: str) -> dict[str, Any]:
        """Published versions of one adapter."""
        return {"name": name, "versions": store.list_versions(name)}

    @app.get("/v1/adapters/{name}/{version}", dependencies=reads, tags=["adapters"])
    def resolve(name: str, version: str) -> dict[str, Any]:
        """The manifest of one version (or ``latest``)."""
        return store.resolve(name, _version(version)).to_dict()

    @app.get(
        "/v1/adapters/{name}/{version}/files/{filename}", dependencies=reads, tags=["adapters"]
    )
    def read_file(name: str, version: str, filename: str) -> Response:
        """One file's bytes, verified against the signed manifest."""
        manifest = store.resolve(name, _version(version))
        data = store.read_file(name, manifest.version, filename)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"X-Content-SHA256": manifest.files[filename]},
        )

    @app.post("/v1/adapters", status_code=201, dependencies=writes, tags=["adapters"])
    def publish(request: PublishRequest) -> dict[str, Any]:
        """Publish a signed manifest with base64 files as the next version."""
        manifest = Manifest.from_dict(request.manifest)
        files: dict[str, bytes] = {}
        for filename, text in request.files.items():
            try:
                files[filename] = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError) as e:
                raise ApiError(400, f"file {filename!r} is not valid base64", "ValueError") from e
        try:
            stored = store.publish_signed(manifest, files)
        except UntrustedKeyError as e:
            raise ApiError(403, str(e), type(e).__name__) from e
        except (SignatureError, IntegrityError) as e:
            raise ApiError(422, str(e), type(e).__name__) from e
        return stored.to_dict()

    def _signed(request: PeerRequest, action: str) -> SignedPeerRequest:
        if request.action != action:
            raise ApiError(
                422, f"`action` must be {action!r}, got {request.action!r}", "ValueError"
            )
        return SignedPeerRequest.from_dict(request.model_dump())

    @app.post("/v1/peers", status_code=201, dependencies=peer_writes, tags=["peers"])
    def register_peer(request: PeerRequest) -> dict[str, Any]:
        """Register or update an inference peer (signed by its owner's key)."""
        signed = _signed(request, "register")
        try:
            peer = store.register_peer_signed(signed)
        except UntrustedKeyError as e:
            raise ApiError(403, str(e), type(e).__name__) from e
        except SignatureError as e:
            raise ApiError(422, str(e), type(e).__name__) from e
        return peer.to_dict()

    @app.post("/v1/peers/{peer_id}/heartbeat", dependencies=peer_writes, tags=["peers"])
    def heartbeat(peer_id: str, request: PeerRequest) -> dict[str, Any]:
        """Mark a peer alive now (signed by its owner's key)."""
        check_name("peer_id", peer_id)
        signed = _signed(request, "heartbeat")
        if signed.peer_id != peer_id:
            raise ApiError(
                422, f"heartbeat body is for {signed.peer_id!r}, not {peer_id!r}", "ValueError"
            )
        try:
            return store.heartbeat_signed(signed).to_dict()
        except UntrustedKeyError as e:
            raise ApiError(403, str(e), type(e).__name__) from e
        except SignatureError as e:
            raise ApiError(422, str(e), type(e).__name__) from e

    @app.get("/v1/peers", dependencies=reads, tags=["peers"])
    def peers(alive_within: float | None = None) -> dict[str, Any]:
        """All peers with their up/down state."""
        return {"peers": [p.to_dict() for p in store.peers(alive_within)]}

    return app


def serve(
    root: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    public_reads: bool = True,
    db_url: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    mount: Callable[[FastAPI, HubStore], Callable[[], None] | None] | None = None,
) -> None:
    """Serve the hub stored under ``root`` with uvicorn until interrupted.

    Requests are authorized by the tokens in the hub's database only (made
    with ``fednet hub token create``); there is no default token.

    Parameters
    ----------
    mount : callable, optional
        ``mount(app, store)`` adds routes of a higher layer before serving and
        may return a function to call when serving stops. ``fednet hub serve``
        mounts the network console (:mod:`fednet.console`) this way; the hub
        itself imports nothing above it.
    """
    import uvicorn

    store = HubStore(root, db_url=db_url)
    if not store.tokens.list():
        logger.warning(
            "hub %s has no tokens: nothing can be published until `fednet hub token create`",
            root,
        )
    app = create_app(store, public_reads=public_reads, max_upload_bytes=max_upload_bytes)
    close = mount(app, store) if mount is not None else None
    logger.info("serving hub %s on http://%s:%d", root, host, port)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        if close is not None:
            close()
        store.close()
