"""Bearer tokens: every endpoint but ``/healthz`` asks for one, unless none is configured
(``rustyflower dev`` on loopback)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rustyflower.adapters.web.errors import ApiError
from rustyflower.adapters.web.settings import ApiSettings

_bearer = HTTPBearer(auto_error=False, description="A token of RUSTYFLOWER_API_TOKENS.")


def settings_of(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    settings = settings_of(request)
    if settings.anonymous:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    given = credentials.credentials.encode()
    # compare with every token, whichever matches: the time taken tells nothing
    matched = False
    for token in settings.tokens:
        matched |= hmac.compare_digest(given, token.encode())
    if not matched:
        raise _unauthorized("the bearer token is not valid")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
