"""py-amqp over plain TCP, reading what the socket holds instead of each frame's pieces,
and waiting for it without a timed read.

py-amqp reads a frame with three `recv` calls of exactly the bytes it wants next (the
7-byte header, the payload, the end octet), and Python polls the socket before each
one, since it has a timeout: nine `recv` and nine `poll` for a delivery (method, content
header and body frames), three of each for a publisher confirm. Here a read takes up to
READ_SIZE bytes at once — a delivery, or several, in one `recv` — and keeps what is
left for the next frame, as py-amqp keeps a frame read in part.

A wait that ends with nothing to read (four times a second in an idle consumer, and at
each tick while a worker waits for a department call) cost py-amqp a timed read: the
socket's timeout set and reset, and `socket.timeout` raised through six frames and a
context manager, about 50 us. Here it is one `poll`; a timed read follows only when
there is something to read, and a frame already read in full is taken without setting
the socket's timeout (two `ioctl` calls each time).

The bytes on the wire, the frames and their order are py-amqp's own; TLS connections
keep py-amqp's transport (a TLS socket may hold decrypted bytes that `poll` cannot see).
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
from typing import Any

from amqp.transport import TCPTransport
from kombu.transport import pyamqp

READ_SIZE = 65536


class BufferedTCPTransport(TCPTransport):  # type: ignore[misc]  # py-amqp is untyped
    _read_buffer: bytes  # py-amqp's: received, not yet read

    def _setup_transport(self) -> None:
        super()._setup_transport()
        self._poller = select.poll()
        self._poller.register(self.sock, select.POLLIN)
        # The same socket with one `wake_on`: a consumer waits on both at every tick, so
        # the poller is kept, not made and registered anew each time.
        self._waking_poller = select.poll()
        self._waking_poller.register(self.sock, select.POLLIN)
        self._wake_on_fd = -1

    def readable_within(self, timeout: float, wake_on: socket.socket | None = None) -> bool:
        """Whether a frame (or part of one) is here, or arrives within `timeout` seconds;
        a closed or failed socket counts as readable, for the read to raise. `wake_on`
        ending the wait first (what it holds is read out) makes it False."""
        if self._read_buffer:
            return True
        if wake_on is None:
            return bool(self._poller.poll(timeout * 1000))
        wake_on_fd = wake_on.fileno()
        if wake_on_fd != self._wake_on_fd:
            if self._wake_on_fd >= 0:
                self._waking_poller.unregister(self._wake_on_fd)
            self._waking_poller.register(wake_on_fd, select.POLLIN)
            self._wake_on_fd = wake_on_fd
        readable = False
        for fd, _ in self._waking_poller.poll(timeout * 1000):
            if fd == wake_on_fd:
                # One read: wake-ups are single bytes written between two waits, far fewer
                # than a read takes; any left over only end the next wait early.
                with contextlib.suppress(BlockingIOError):
                    wake_on.recv(4096)
            else:
                readable = True
        return readable

    def having_timeout(self, timeout: float | None) -> Any:
        return super().having_timeout(None if self._holds_a_frame() else timeout)

    def _holds_a_frame(self) -> bool:
        buffered: bytes = self._read_buffer
        # A frame: type (1 byte), channel (2), payload size (4), payload, end octet.
        return len(buffered) >= 7 and len(buffered) >= 8 + int.from_bytes(buffered[3:7])

    def _read(
        self, n: int, initial: bool = False, _errnos: tuple[int, ...] = (errno.EAGAIN, errno.EINTR)
    ) -> bytes:
        """Exactly `n` bytes: from what an earlier read left, then from the socket."""
        buffered: bytes = self._read_buffer
        if len(buffered) < n:
            recv = self._quick_recv
            try:
                while len(buffered) < n:
                    try:
                        received = recv(max(n - len(buffered), READ_SIZE))
                    except OSError as error:
                        if error.errno in _errnos:
                            if initial and self.raise_on_initial_eintr:
                                raise TimeoutError() from error
                            continue
                        raise
                    if not received:
                        raise OSError("Server unexpectedly closed connection")
                    buffered += received
            except BaseException:
                self._read_buffer = buffered  # read_frame puts a partial frame back in front
                raise
        if len(buffered) == n:
            self._read_buffer = b""
            return buffered
        self._read_buffer = buffered[n:]
        return buffered[:n]


class _Connection(pyamqp.Connection):
    def Transport(  # py-amqp's name for its transport factory
        self,
        host: str,
        connect_timeout: float | None,
        ssl: Any = False,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        **options: Any,
    ) -> Any:
        if ssl:
            return super().Transport(
                host, connect_timeout, ssl, read_timeout, write_timeout, **options
            )
        return BufferedTCPTransport(
            host,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            write_timeout=write_timeout,
            **options,
        )


class AmqpTransport(pyamqp.Transport):
    """kombu's py-amqp transport, reading through `BufferedTCPTransport`."""

    Connection = _Connection

    def drain_events(
        self,
        connection: Any,
        timeout: float | None = None,
        wake_on: socket.socket | None = None,
        **options: Any,
    ) -> Any:
        """kombu's, and `wake_on`: a socket another thread writes to, to end the wait
        early (it times out, as if it had lasted `timeout`)."""
        reader = connection.transport
        if (
            timeout is not None
            and isinstance(reader, BufferedTCPTransport)
            and not reader.readable_within(timeout, wake_on)
        ):
            raise TimeoutError("timed out")
        return connection.drain_events(timeout=timeout, **options)
