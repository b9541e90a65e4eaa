"""Serving the API with uvicorn: in the foreground (``rustyflower serve``) or on a thread
beside a worker (``rustyflower dev``, tests, the bench)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import uvicorn
from fastapi import FastAPI

from rustyflower.core.errors import RustyFlowerError

log = logging.getLogger("rustyflower.api")


class ApiServerError(RustyFlowerError):
    """The API server did not start (the port is taken, ...)."""


def config(app: FastAPI, host: str, port: int, *, access_log: bool = False) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # the process's logging (the CLI's handler) shows uvicorn's lines
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


class ApiServer:
    """uvicorn on a thread of its own: ``start`` returns once it listens (or raises)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = uvicorn.Server(config(app, host, port))
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.host = host

    @property
    def port(self) -> int:
        servers = getattr(self._server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise ApiServerError("the API server is not listening")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 20.0) -> str:
        def run() -> None:
            try:
                asyncio.run(self._server.serve())
            except BaseException as error:  # reported by start() or stop(), never lost
                self._failure = error
                log.exception("the API server stopped with an error")

        self._thread = threading.Thread(target=run, name="rustyflower-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ApiServerError(
                    f"the API did not start on {self.host}"
                    + (f": {self._failure}" if self._failure else "")
                )
            time.sleep(0.02)
        return self.url

    def stop(self, timeout: float = 15.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
