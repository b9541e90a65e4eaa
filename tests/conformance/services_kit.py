"""What every harness of the service corpus (``services/*.yaml``) shares.

* :class:`Endpoint`: a real HTTP server on 127.0.0.1 (the standard library's), the
  ``http://endpoint.test`` of the corpus: ``/echo`` answers the method, path, query and
  JSON body it got; ``/status/<code>`` answers that status with a small JSON body;
* :func:`localise`: a case's input with ``http://endpoint.test`` pointing at it;
* :class:`Seen` and :func:`effect_problems`: what a runtime's queues, buses and stores
  hold after a run, compared with the case's ``expect.effects``;
* :func:`onprem_effects`: that, read from the site's backends (Redis streams, a folder).

Effects are checked where one runtime did all the work (uninterrupted, or cut and
continued by the same runtime); a run failed over to another runtime has its sends split
between two platforms, so there only the outputs are compared.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis

from rustyflower.adapters.services.onprem import event_stream, queue_stream
from tests.conformance.corpus import Case, Effects
from tests.conformance.test_conformance import json_equal

PLACEHOLDER = "http://endpoint.test"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the tests say what they need

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if parts.path.startswith("/status/"):
            code = int(parts.path.rsplit("/", 1)[1])
            self._answer(code, {"status": code})
            return
        self._answer(
            200,
            {
                "method": self.command,
                "path": parts.path,
                "query": dict(parse_qsl(parts.query)),
                "body": json.loads(raw) if raw else None,
            },
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815 - http.server names


class Endpoint:
    """The corpus's HTTP endpoint, served on a free port of 127.0.0.1 in a thread."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def endpoint() -> Iterator[Endpoint]:
    with Endpoint() as served:
        yield served


def localise(value: Any, base: str) -> Any:
    """``value`` with every text starting ``http://endpoint.test`` moved to ``base``."""
    if isinstance(value, str) and value.startswith(PLACEHOLDER):
        return base + value[len(PLACEHOLDER) :]
    if isinstance(value, list):
        return [localise(item, base) for item in value]
    if isinstance(value, dict):
        return {key: localise(item, base) for key, item in value.items()}
    return value


@dataclass
class Seen:
    """What a runtime's resources hold: as :class:`~tests.conformance.corpus.Effects`."""

    messages: dict[str, list[Any]] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)


def _once_each(items: list[Any]) -> list[Any]:
    kept: list[Any] = []
    for item in items:
        if not any(json_equal(item, other) for other in kept):
            kept.append(item)
    return kept


def effect_problems(
    expected: Effects | None, seen: Seen, *, repeats_allowed: bool = False
) -> list[str]:
    """How ``seen`` differs from the case's effects, for the resources the case names
    (``repeats_allowed``: a message or event that came twice counts once)."""
    if expected is None:
        return []
    found = []
    for kind in ("messages", "events"):
        wanted: Mapping[str, list[Any]] = getattr(expected, kind)
        got: Mapping[str, list[Any]] = getattr(seen, kind)
        for name, items in wanted.items():
            actual = got.get(name, [])
            if repeats_allowed:
                actual = _once_each(actual)
            if not json_equal(actual, list(items)):
                found.append(f"{kind} of {name!r}: {actual!r}, expected {list(items)!r}")
    for store, objects in expected.objects.items():
        actual_objects = seen.objects.get(store, {})
        if not json_equal(actual_objects, dict(objects)):
            found.append(f"objects of {store!r}: {actual_objects!r}, expected {dict(objects)!r}")
    return found


def decode_object(key: str, data: bytes) -> Any:
    """A stored object as the effects write it: JSON when it is JSON, else its text."""
    text = data.decode("utf-8")
    try:
        return json.loads(text)
    except ValueError:
        return text


def onprem_effects(case: Case, client: redis.Redis, prefix: str, objects_dir: Path) -> Seen:
    """The site's queues, buses (Redis streams) and stores (folders) a case names."""
    expected = case.expect.effects
    seen = Seen()
    if expected is None:
        return seen
    for queue in expected.messages:
        entries = client.xrange(queue_stream(prefix, queue))
        seen.messages[queue] = [json.loads(fields[b"body"]) for _, fields in entries]
    for bus in expected.events:
        entries = client.xrange(event_stream(prefix, bus))
        seen.events[bus] = [
            {
                "type": fields[b"type"].decode(),
                "source": fields[b"source"].decode(),
                "detail": json.loads(fields[b"detail"]),
            }
            for _, fields in entries
        ]
    for store in expected.objects:
        root = objects_dir / store
        seen.objects[store] = {
            str(path.relative_to(root)): decode_object(path.name, path.read_bytes())
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
    return seen
