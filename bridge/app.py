"""The HTTP surface Enginy calls: routes, API-key check, error answers.

``POST /activities`` answers:

=====  ==================================================================
200    this activity was delivered before; the stored CRM id, no CRM call
201    delivered now; ``id`` is the CRM's object id
202    ``[crm] when_unavailable = "accept"``: kept, ``id`` is a bridge id
400    the body breaks the contract, or an id cannot belong to this CRM
401    missing or wrong API key (every endpoint, ``/health`` included)
413    the body is larger than ``[server] max_body_bytes``
422    the CRM rejected the activity; ``code`` and ``fields`` say why
503    not confirmed within ``[crm] deadline_seconds``; kept and retried,
       a later request with the same activity gets its id (Retry-After)
=====  ==================================================================
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.base import Adapter
from bridge.config import Settings
from bridge.errors import (
    CrmError,
    CrmRejected,
    InvalidRequest,
    PayloadTooLarge,
    RequestError,
)
from bridge.models import Activity, ActivityRequest
from bridge.runtime import Runtime
from bridge.store import Claim

log = logging.getLogger(__name__)

#: Suggested wait when the CRM did not confirm in time.
RETRY_AFTER_SECONDS = 5


def create_app(settings: Settings, adapter: Adapter | None = None) -> Starlette:
    """The ASGI application; ``adapter`` replaces the configured one (tests)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        runtime = await Runtime.open(settings, adapter)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.close()

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/activities", post_activity, methods=["POST"]),
        ],
        exception_handlers={
            HTTPException: _http_error,
            RequestError: _request_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.add_middleware(
        ApiKeyMiddleware,
        keys=settings.secrets.api_keys,
        header=settings.server.api_key_header,
    )
    return app


class ApiKeyMiddleware:
    """Lets through only requests carrying one of the configured keys.

    Every key is compared, in constant time, whatever the outcome, so timing
    tells nothing about which key or how much of it matched.
    """

    def __init__(self, app: ASGIApp, keys: tuple[SecretStr, ...], header: str) -> None:
        self._app = app
        self._keys = [key.get_secret_value().encode() for key in keys]
        self._header = header.lower().encode("latin-1")
        self._name = header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            response = _error(
                401, "unauthorized", f"Missing or invalid API key in {self._name}."
            )
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        presented = b""
        for name, value in scope["headers"]:
            if name == self._header:
                presented = value
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        return matched and bool(presented)


async def health(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return JSONResponse({"status": "ok", "backend": runtime.adapter.name})


async def post_activity(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    started = time.monotonic()

    raw = await read_body(request, settings.server.max_body_bytes)
    activity = ActivityRequest.parse(raw).normalise(datetime.now(UTC))
    problems = runtime.adapter.check(activity)
    if problems:
        names = ", ".join(problem.field for problem in problems)
        raise InvalidRequest(
            f"Ids that {runtime.adapter.name} cannot hold: {names}.", problems
        )

    claim = await _claim(runtime, activity)
    entry = claim.entry
    if entry.state == "delivered":
        return JSONResponse({**entry.answer, "id": entry.crm_id}, status_code=200)
    if claim.created:
        cycle = runtime.delivery.start(activity, marked=True)
    else:
        stored = entry.activity or activity
        cycle = runtime.delivery.start(stored, entry.in_doubt, entry.attempts)
    if settings.crm.when_unavailable == "accept":
        return JSONResponse({**entry.answer, "id": bridge_id(entry.key_hash)}, 202)
    if cycle is None:
        return _unavailable("The bridge is busy; the activity is kept.")

    remaining = settings.crm.deadline_seconds - (time.monotonic() - started)
    return await _outcome(cycle, entry.answer, remaining)


async def _claim(runtime: Runtime, activity: Activity) -> Claim:
    """Commit the activity (new rows as already leaving) or find its row."""
    now = time.time()
    max_age = runtime.settings.outbox.max_age.total_seconds()
    lease = runtime.delivery.timing.lease
    return await runtime.journal.run(
        lambda store: store.claim(activity, now, max_age, lease, sending=True)
    )


async def _outcome(
    cycle: asyncio.Task[str], answer: dict[str, Any], remaining: float
) -> Response:
    """Wait for the cycle within the deadline and answer what it came to."""
    # wait() leaves the cycle running past the deadline: it goes on delivering.
    await asyncio.wait({cycle}, timeout=max(remaining, 0.001))
    if not cycle.done() or cycle.cancelled():
        return _unavailable("The CRM did not confirm in time; the activity is kept.")
    try:
        crm_id = cycle.result()
    except CrmRejected as error:
        return _rejected(error)
    except CrmError as error:
        return _unavailable("The CRM is unavailable; the activity is kept.", error)
    return JSONResponse({**answer, "id": crm_id}, status_code=201)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes.

    A declared length is checked up front (the server never reads past it); a
    body without one (chunked) is counted as it arrives.
    """
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    if declared is not None:
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _declared_length(request: Request) -> int | None:
    # Straight from the ASGI scope: building Starlette's Headers costs more.
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def bridge_id(key_hash: str) -> str:
    """The stable id answered before the CRM's is known."""
    return f"bridge-{key_hash[:32]}"


def _rejected(error: CrmError) -> Response:
    why = error.code or error.status
    body: dict[str, Any] = {
        "error": "crm_rejected",
        "message": f"{error.backend} rejected the activity ({why}).",
        "code": error.code,
        "fields": list(error.fields),
    }
    return JSONResponse(body, status_code=422)


def _unavailable(message: str, error: CrmError | None = None) -> Response:
    wait = RETRY_AFTER_SECONDS
    if error is not None and error.retry_after:
        wait = max(wait, math.ceil(error.retry_after))
    response = _error(503, "crm_unavailable", message)
    response.headers["Retry-After"] = str(wait)
    return response


def _error(status: int, error: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status)


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    details = [{"field": d.field, "problem": d.problem} for d in exc.details]
    return _error(exc.status, exc.error, exc.message, details=details)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    names = {404: "not_found", 405: "method_not_allowed"}
    error = names.get(exc.status_code, "http_error")
    body = {"error": error, "message": str(exc.detail)}
    return JSONResponse(body, exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected %s on %s", type(exc).__name__, request.url.path)
    return _error(
        500, "internal_error", "The bridge failed; the request can be retried."
    )
