"""Every error the API answers with: one JSON shape, a 4xx for anything the caller sent.

    {"error": {"status": 404, "code": "unknown_instance", "message": "...",
               "field": null, "problems": []}}

``field`` names the part of the request at fault (``body.input``, ``query.limit``,
``path.instance_id``); ``problems`` lists each one when there are several. A 500 is a
bug in RustyFlower, never the caller's input: its message hides the details (they are
logged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rustyflower.adapters.redis.listing import CursorError
from rustyflower.adapters.redis.webhook_store import UnknownWebhookError
from rustyflower.client import (
    ContentionError,
    ContinuityConfigError,
    FencedError,
    RedisUnavailableError,
    UnknownFlowError,
    UnknownInstanceError,
    VersionConflictError,
)
from rustyflower.core.errors import (
    DefinitionError,
    EpochConflictError,
    EventRejectedError,
    RustyFlowerError,
    SnapshotError,
)
from rustyflower.core.model.formats import MAX_DEPTH

log = logging.getLogger("rustyflower.api")


class ApiError(Exception):
    """An answer other than success, raised by a route."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


def error_body(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    problems: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "error": {
            "status": status,
            "code": code,
            "message": message,
            "field": field,
            "problems": list(problems),
        }
    }


def _answer(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    problems: Sequence[dict[str, Any]] = (),
    *,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(status, code, message, field, problems)
    return JSONResponse(body, status, dict(headers) if headers is not None else None)


_RUNNER_ERRORS: tuple[tuple[type[BaseException], int, str], ...] = (
    (UnknownInstanceError, 404, "unknown_instance"),
    (UnknownFlowError, 404, "unknown_flow"),
    (UnknownWebhookError, 404, "unknown_webhook"),
    (VersionConflictError, 409, "version_conflict"),
    (EventRejectedError, 409, "rejected"),
    (EpochConflictError, 409, "epoch_conflict"),
    (FencedError, 409, "fenced"),
    (ContentionError, 409, "contention"),
    (CursorError, 400, "invalid_cursor"),
    (DefinitionError, 422, "invalid_definition"),
    (SnapshotError, 422, "invalid_snapshot"),
    (ContinuityConfigError, 503, "cloud_not_configured"),
    (RedisUnavailableError, 503, "redis_unavailable"),
)


def location(loc: Sequence[Any]) -> str:
    """``("body", "input", 3)`` -> ``body.input[3]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _answer(error.status, error.code, error.message, error.field, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for item in error.errors():
            if item.get("type") == "json_invalid":  # not JSON at all: nothing else to say
                problem = {"field": "body", "message": _json_message(item)}
                return _answer(
                    400, "invalid_json", f"body: {problem['message']}", "body", [problem]
                )
            loc = tuple(item.get("loc", ()))
            problems.append({"field": location(loc), "message": str(item.get("msg", "invalid"))})
        first = problems[0] if problems else {"field": None, "message": "invalid request"}
        message = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        return _answer(422, "invalid_request", message, first["field"], problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
        }.get(error.status_code, "http_error")
        field = "body" if error.status_code == 400 else None
        message = str(error.detail)
        if isinstance(error.__cause__, RecursionError):  # FastAPI's parse of a deep body
            message = f"body: not valid JSON here (nested deeper than {MAX_DEPTH} levels)"
        return _answer(error.status_code, code, message, field, headers=error.headers)

    @app.exception_handler(RustyFlowerError)
    async def runner_error(request: Request, error: RustyFlowerError) -> JSONResponse:
        for kind, status, code in _RUNNER_ERRORS:
            if isinstance(error, kind):
                return _answer(status, code, str(error))
        return _answer(400, "rejected", str(error))

    @app.exception_handler(Exception)
    async def bug(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _answer(500, "internal", "an unexpected error; it is logged on the server")


def _json_message(item: dict[str, Any]) -> str:
    context = item.get("ctx") or {}
    reason = context.get("error") or item.get("msg") or "invalid JSON"
    return f"not valid JSON ({reason})"


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413, before anything reads it all.

    A declared ``Content-Length`` over the limit is refused at once; a body sent in
    chunks is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0 or size > self.limit:
                await self._refuse(send, size)
                return
        seen = 0
        responded = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not responded:
                await self._refuse(send, seen)

    async def _refuse(self, send: Send, size: int) -> None:
        message = (
            f"the request body is over {self.limit} bytes"
            if size >= 0
            else "the Content-Length header is not a number"
        )
        status = 413 if size >= 0 else 400
        body = json.dumps(
            error_body(status, "too_large" if size >= 0 else "bad_request", message, "body")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI passes an HTTPException from reading the body on
    to the handlers (any other error there becomes its generic 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over {limit} bytes")
