"""The buffered py-amqp transport reads the same frames as py-amqp's own, in fewer reads:
frames that arrive together are read with one `recv`, frames split anywhere are put
together, a frame cut short by a timeout is finished by the next read, a wait with
nothing to read ends without a timed read, and one a wake-up ends reads the wake-up out."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from amqp.transport import SSLTransport

from runtime.messaging import Broker
from runtime.messaging.transport import AmqpTransport, BufferedTCPTransport


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"


# A delivery as the broker sends it: method, content header and body frames.
DELIVERY = [(1, 1, b"basic.deliver" * 3), (2, 1, b"header" * 20), (3, 1, b"{}" * 900)]
WIRE = b"".join(frame(*each) for each in DELIVERY)


class CountedRecv:
    def __init__(self, sock: socket.socket) -> None:
        self._recv = sock.recv
        self.calls = 0

    def __call__(self, size: int) -> bytes:
        self.calls += 1
        return self._recv(size)


@pytest.fixture
def transport() -> Iterator[tuple[BufferedTCPTransport, socket.socket, CountedRecv]]:
    ours, broker = socket.socketpair()
    transport = BufferedTCPTransport("127.0.0.1:5672")
    transport.sock = ours
    transport._setup_transport()
    counted = transport._quick_recv = CountedRecv(ours)
    try:
        yield transport, broker, counted
    finally:
        ours.close()
        broker.close()


def test_frames_that_arrive_together_take_one_read(
    transport: tuple[BufferedTCPTransport, socket.socket, CountedRecv],
) -> None:
    reader, broker, recv = transport
    broker.sendall(WIRE)
    assert [reader.read_frame() for _ in DELIVERY] == DELIVERY
    assert recv.calls == 1  # py-amqp's own transport: nine, three per frame


@pytest.mark.parametrize("cut", [1, 5, 7, 8, 60, 100, len(WIRE) - 1])
def test_frames_split_anywhere_are_put_together(
    transport: tuple[BufferedTCPTransport, socket.socket, CountedRecv], cut: int
) -> None:
    reader, broker, _ = transport
    broker.sendall(WIRE[:cut])
    reader.sock.settimeout(0.01)
    read: list[tuple[int, int, bytes]] = []
    while len(read) < len(DELIVERY):
        try:
            read.append(reader.read_frame())
        except TimeoutError:
            broker.sendall(WIRE[cut:])  # the rest arrives after a wait timed out
    assert read == DELIVERY


def test_a_plain_amqp_broker_reads_through_it_and_tls_through_py_amqp() -> None:
    assert Broker("amqp://guest:guest@127.0.0.1:5672/").connect().transport_cls is AmqpTransport
    assert Broker("amqps://guest:guest@127.0.0.1:5671/").connect().transport_cls is not (
        AmqpTransport
    )
    connection = AmqpTransport.Connection.__new__(AmqpTransport.Connection)  # not connected
    assert isinstance(connection.Transport("127.0.0.1:5672", 5), BufferedTCPTransport)
    assert isinstance(connection.Transport("127.0.0.1:5671", 5, ssl=True), SSLTransport)


class Unread:
    """py-amqp's connection, as far as a wait with nothing to read may touch it."""

    def __init__(self, transport: BufferedTCPTransport) -> None:
        self.transport = transport

    def drain_events(self, timeout: float | None = None) -> None:
        raise AssertionError("a timed read with nothing to read")


def test_a_wait_with_nothing_to_read_ends_without_a_timed_read(
    transport: tuple[BufferedTCPTransport, socket.socket, CountedRecv],
) -> None:
    reader, broker, recv = transport
    with pytest.raises(TimeoutError):
        AmqpTransport(client=None).drain_events(Unread(reader), timeout=0.01)
    assert recv.calls == 0
    broker.sendall(WIRE[:5])  # part of a frame: read, and the timed read waits for the rest
    with pytest.raises(AssertionError, match="timed read"):
        AmqpTransport(client=None).drain_events(Unread(reader), timeout=0.01)


def test_a_wake_up_ends_a_wait_and_one_left_over_only_ends_the_next_early(
    transport: tuple[BufferedTCPTransport, socket.socket, CountedRecv],
) -> None:
    reader, broker, _ = transport
    wake_on, waker = socket.socketpair()
    wake_on.setblocking(False)
    with wake_on, waker:
        waker.send(b"\0" * 5000)  # more than one read takes
        assert not reader.readable_within(10, wake_on)
        assert not reader.readable_within(10, wake_on)  # what the first read left
        assert not reader.readable_within(0.01, wake_on)  # nothing left: a plain timeout
        broker.sendall(WIRE)
        assert reader.readable_within(10, wake_on)
