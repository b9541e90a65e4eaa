"""The ``http.call`` backend every runtime that runs it as an activity shares (urllib).

The site, the Azure activity function and the AWS activity Lambda (for a machine compiled
without an EventBridge connection) make the same request the same way: the body is JSON,
``query`` is added to the URL, any status is an answer (the service function turns 4xx and
5xx into the portable errors); only a request that gets no answer fails here, with
``ServiceUnavailable``.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Final

from rustyflower.core.services import HttpCall, ServiceUnavailable
from rustyflower.core.services.calls import HttpResponse

DEFAULT_TIMEOUT_SECONDS: Final = 60.0
MAX_RESPONSE_BYTES: Final = 256 * 1024
"""A response body at most (Step Functions passes no more between states)."""
USER_AGENT: Final = "rustyflower-http"


def request_url(request: HttpCall) -> str:
    """The URL with ``query`` added (after any query the URL has)."""
    if not request.query:
        return request.url
    separator = "&" if urllib.parse.urlsplit(request.url).query else "?"
    return request.url + separator + urllib.parse.urlencode(request.query)


class UrllibHttp:
    """Makes ``http.call`` requests with the standard library's client."""

    def __init__(self, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds

    def __call__(self, request: HttpCall) -> HttpResponse:
        headers = {"User-Agent": USER_AGENT, **request.headers}
        data = request.body_bytes
        if data is not None and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
        prepared = urllib.request.Request(
            request_url(request), data=data, headers=headers, method=request.method
        )
        try:
            with urllib.request.urlopen(prepared, timeout=self.timeout_seconds) as response:
                return HttpResponse(
                    response.status,
                    response.read(MAX_RESPONSE_BYTES + 1)[:MAX_RESPONSE_BYTES],
                    dict(response.headers.items()),
                )
        except urllib.error.HTTPError as answered:  # a status of 400 or more: still an answer
            with answered:
                body = answered.read(MAX_RESPONSE_BYTES)
            return HttpResponse(answered.code, body, dict(answered.headers.items()))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise ServiceUnavailable(
                f"{request.method} {request.url} got no answer: {reason}"
            ) from None
