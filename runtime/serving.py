"""An ASGI app served by uvicorn on a thread: the intake API, department simulators."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import uvicorn


class ThreadedServer:
    """Serves `app` on `host:port` (port 0 picks a free one) until `stop`.

    `ssl` takes uvicorn's `ssl_*` options (certificate, key, client CA, whether a client
    certificate is required); with them the server speaks HTTPS. `access_log` logs one
    line per request at info level (masked like every record).
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: Mapping[str, Any] = {},
        access_log: bool = False,
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="info" if access_log else "warning",
            log_config=None,  # no handlers of uvicorn's own: records reach the masked root's
            access_log=access_log,
            # A simulator told to never answer holds requests open: do not wait for them.
            timeout_graceful_shutdown=1,
            **ssl,
        )
        self._scheme = "https" if ssl else "http"
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http-server", daemon=True)
        self._port = port

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the HTTP server did not start on port {self._port}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        return f"{self._scheme}://{host}:{port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
