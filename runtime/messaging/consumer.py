"""A consumer loop that owns one connection, survives the broker going away, never spins
on a message it cannot handle, and is the only code that settles a delivery.

A handler gets a `Delivery` and answers with a settlement, which the loop carries out:

    Ack(publish) ........... publish what the delivery caused (confirmed), then ack
    Park(reason) ........... never to be processed: copied to the parking lot with the
                             reason (confirmed), then acked
    Hold(reason) ........... Lianban's own dependency is down: the delivery is kept (not
                             requeued, so its delivery count does not grow) and handed
                             over again after a backoff; later deliveries wait behind it
    RetryLater(reason) ..... the department is unavailable: a copy comes back after a
                             delay (`runtime.messaging.delayed`), then ack
    PENDING ................ the handler settles it later, from any thread (`settle`)

A handler that raises instead answers for itself: MessageRefused parks with its reason,
TransientError holds, anything else parks with the error as reason — unless it is the
broker connection failing: then the loop reconnects and the broker redelivers.

Settlements ready together (a batch's answers, or all that other threads made since the
loop last looked) are carried out together: what they publish (what acks caused, parked
and retried copies) goes out as one confirmed batch, then the deliveries are acked. Acks
wait up to ACK_WITHIN_SECONDS for others, to go together as one `multiple` ack where the
broker allows: one frame, and one Raft command in a quorum queue instead of one each.

With a batch handler, the deliveries waiting together go to it in one call, in order,
and it answers one settlement each. If it raises anything but TransientError or a
connection error, the same deliveries go to the per-message handler one at a time,
which isolates the one at fault.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from queue import Empty, SimpleQueue
from typing import Any

import structlog
from kombu import Connection, Consumer, Message, Queue

from contracts import topology
from contracts.errors import ConsumerStalled, MessageRefused, TransientError
from runtime.failpoints import failpoint
from runtime.messaging.backoff import Backoff
from runtime.messaging.broker import Broker
from runtime.messaging.delayed import DelayedDelivery
from runtime.messaging.envelope import (
    REFUSED_AT_HEADER,
    REFUSED_REASON_HEADER,
    SOURCE_QUEUE_HEADER,
    Delivery,
)
from runtime.messaging.publisher import Outgoing, Publisher
from runtime.messaging.settlement import (
    Ack,
    Hold,
    Park,
    Pending,
    RetryLater,
    Settlement,
)
from runtime.messaging.transport import BufferedTCPTransport

log = structlog.get_logger(__name__)
# How long a wait may last with no work in hand: a delivery ends it at once; a stop
# (every Stack.stop joins its consumers), a heartbeat or a delayed copy waits up to this.
IDLE_WAIT_SECONDS = 0.25
# How long a settled delivery's ack may wait for others. What it caused is confirmed
# already: a crash meanwhile redelivers it, as any crash before an ack does.
ACK_WITHIN_SECONDS = 0.25

Handler = Callable[[Delivery], Settlement | Pending]
BatchHandler = Callable[[Sequence[Delivery]], Sequence[Settlement]]


class ConsumerLoop:
    """Consumes one queue on a connection of its own until `stop` is set.

    Settlements made on other threads (`settle`) and messages sent from them (`send`)
    are carried out on the consuming thread between waits, since a channel belongs to
    its thread: a wait lasts a tick while deliveries are in hand (pending, or waiting to
    be handed over), and up to IDLE_WAIT_SECONDS when none is, so an idle consumer
    does not wake a hundred times a second. On RabbitMQ, `settle` and `send` end the
    wait themselves, so pending deliveries need no tick either: a worker whose calls
    take a second does not wake a hundred times for each. A delivery of a channel that
    has since died is never settled: after a reconnect its tag means nothing, and the
    broker redelivers it instead. On stop, pending deliveries get `grace_seconds` to be
    settled before the connection closes.
    """

    def __init__(
        self,
        broker: Broker,
        queue: Queue,
        handler: Handler,
        *,
        batch_handler: BatchHandler | None = None,
        prefetch: int = 32,
        tick_seconds: float = 0.05,
        grace_seconds: float = 10.0,
        before_ack_failpoint: str | None = None,
        reconnect_backoff: Backoff | None = None,
        hold_backoff: Backoff | None = None,
        liveness_seconds: float = 30.0,
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._handler = handler
        self._batch_handler = batch_handler
        self._one_at_a_time = 0  # deliveries to hand over singly after a failed batch
        self._prefetch = prefetch
        self._tick_seconds = tick_seconds
        self._grace_seconds = grace_seconds
        self._before_ack_failpoint = before_ack_failpoint
        self._reconnect = reconnect_backoff or Backoff(0.5, 30.0)
        self._hold = hold_backoff or Backoff(0.2, 15.0)
        self._liveness_seconds = liveness_seconds
        self._publisher = Publisher(broker)
        self._delayed = DelayedDelivery(
            self._publisher, queue=queue.name, in_memory=broker.is_memory
        )
        self._channel: Any = None
        self._connection_errors: tuple[type[BaseException], ...] = ()
        self._waiting: deque[Delivery] = deque()  # received, not yet handed over
        self._pending: dict[int, Delivery] = {}  # handed over, to be settled later
        self._settled: list[Delivery] = []  # carried out, acked by `_acknowledge_due`
        self._ack_due = 0.0
        # (delivery, settlement) to carry out, or (None, message) to publish.
        self._from_other_threads: SimpleQueue[tuple[Delivery | None, Any]] = SimpleQueue()
        self._held_until = 0.0
        self._last_delivery = time.monotonic()
        self._last_liveness_check = time.monotonic()
        self._last_heartbeat_check = 0.0
        # Written to by `settle` and `send`, to end the consumer's wait on a broker that
        # can wait on it too (`runtime.messaging.transport`); one byte does for many.
        self._wake_on, self._waker = socket.socketpair()
        self._wake_on.setblocking(False)
        self._waker.setblocking(False)
        self._wakeable = False
        self.ready = threading.Event()

    def settle(self, delivery: Delivery, settlement: Ack | Park | RetryLater) -> None:
        """Settle a delivery a handler left PENDING; safe from any thread."""
        if isinstance(settlement, Hold):
            raise TypeError("only a handler's direct answer can hold a delivery")
        self._from_other_threads.put((delivery, settlement))
        self._wake()

    def send(self, message: Outgoing) -> None:
        """Publish `message` (confirmed) on the consuming thread soon; safe from any thread."""
        self._from_other_threads.put((None, message))
        self._wake()

    def _wake(self) -> None:
        # Full: a wake-up is due already. Closed: the loop has ended.
        with contextlib.suppress(OSError):
            self._waker.send(b"\0")

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                connection = self._broker.connect()
                try:
                    self._consume(connection, stop)
                except Exception as error:
                    # Unsettled deliveries come back after a reconnect; the ones held here
                    # belong to the dead channel and are forgotten.
                    delay = self._reconnect.next_delay()
                    log.warning(
                        "consumer.disconnected",
                        queue=self._queue.name,
                        error=repr(error),
                        retry_in=round(delay, 2),
                    )
                    stop.wait(delay)
                finally:
                    self.ready.clear()
                    self._channel = None
                    self._waiting.clear()
                    self._pending.clear()
                    self._settled.clear()
                    connection.release()
        finally:
            self._publisher.close()
            self._wake_on.close()
            self._waker.close()

    def _consume(self, connection: Connection, stop: threading.Event) -> None:
        channel = connection.default_channel
        self._connection_errors = connection.connection_errors + connection.channel_errors
        queue = self._queue.bind(channel)
        queue.declare()
        with Consumer(
            channel,
            queues=[queue],
            # Raw delivery: the handler validates the body against its contract itself.
            on_message=self._receive_one,
            prefetch_count=self._prefetch,
        ) as consumer:
            self._channel = channel
            self._wakeable = isinstance(
                getattr(connection.connection, "transport", None), BufferedTCPTransport
            )
            self._last_delivery = self._last_liveness_check = time.monotonic()
            self.ready.set()
            log.info("consumer.started", queue=self._queue.name)
            while not stop.is_set():
                self._receive(connection)
                self._heartbeat(connection)
                self._hand_over_waiting()
                self._carry_out_from_other_threads()
                self._acknowledge_due()
                self._delayed.publish_due()
                self._check_liveness(queue)
                self._reconnect.reset()
            # Stop: take no new deliveries, then give pending ones their grace while the
            # channel is still open to acknowledge them.
            consumer.cancel()
            self._wait_for_pending()

    def _receive(self, connection: Connection) -> None:
        """Wait for deliveries (see the class). py-amqp reads one message per drain: with a
        batch handler, also take every delivery already on the wire, so that one batch
        holds them."""
        in_hand = self._pending or self._waiting or not self._from_other_threads.empty()
        woken = {"wake_on": self._wake_on} if self._wakeable else {}
        # Woken by other threads, the wait need not tick for what they settle and send.
        ticking = self._waiting or (in_hand and not woken)
        wait = self._tick_seconds if ticking else max(self._tick_seconds, IDLE_WAIT_SECONDS)
        if self._settled:  # their ack is due then
            wait = min(wait, max(self._tick_seconds, self._ack_due - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=wait, **woken)
            while self._batch_handler is not None and len(self._waiting) < self._prefetch:
                connection.drain_events(timeout=0.001)

    def _heartbeat(self, connection: Connection) -> None:
        """Send and check heartbeats once a second, however short the tick (py-amqp logs
        every check; the heartbeat interval is tens of seconds)."""
        now = time.monotonic()
        if now - self._last_heartbeat_check >= 1.0:
            self._last_heartbeat_check = now
            connection.heartbeat_check()

    def _receive_one(self, message: Message) -> None:
        self._last_delivery = time.monotonic()
        self._waiting.append(Delivery.of(message))

    def _hand_over_waiting(self) -> None:
        while self._waiting and time.monotonic() >= self._held_until:
            if self._batch_handler is not None and not self._one_at_a_time:
                batch = list(itertools.islice(self._waiting, self._prefetch))
            else:
                batch = [self._waiting[0]]
            try:
                answers = self._answers(batch)
            except self._connection_errors:
                raise  # the broker connection broke: reconnect, and all is redelivered
            except TransientError as error:
                answers = [Hold(repr(error))] * len(batch)
            except Exception as error:
                log.warning("consumer.batch_failed", queue=self._queue.name, error=repr(error))
                self._one_at_a_time = len(batch)
                continue
            settled: list[tuple[Delivery, Settlement]] = []
            for answer in answers:
                if isinstance(answer, Hold):
                    self._carry_out(settled)
                    self._hold_from_here(answer)
                    return
                delivery = self._waiting.popleft()
                self._one_at_a_time = max(0, self._one_at_a_time - 1)
                if isinstance(answer, Pending):
                    self._pending[id(delivery)] = delivery
                else:
                    settled.append((delivery, answer))
            self._carry_out(settled)
            self._hold.reset()

    def _answers(self, batch: list[Delivery]) -> Sequence[Settlement | Pending]:
        if len(batch) > 1:
            assert self._batch_handler is not None
            answers = self._batch_handler(batch)
            if len(answers) != len(batch):
                raise AssertionError(f"{len(answers)} settlements for {len(batch)} deliveries")
            return answers
        try:
            return [self._handler(batch[0])]
        except TransientError as error:
            return [Hold(repr(error))]
        except self._connection_errors:
            raise
        except MessageRefused as refusal:
            return [Park(refusal.reason)]
        except Exception as error:
            log.exception("consumer.handler_failed", queue=self._queue.name)
            return [Park(f"handler failed: {error!r}"[:500])]

    def _hold_from_here(self, hold: Hold) -> None:
        delay = self._hold.next_delay()
        self._held_until = time.monotonic() + delay
        log.warning(
            "consumer.holding",
            queue=self._queue.name,
            reason=hold.reason,
            retry_in=round(delay, 2),
            waiting=len(self._waiting),
        )

    def _carry_out_from_other_threads(self) -> None:
        """Everything other threads queued since the last look, carried out together."""
        settled: list[tuple[Delivery, Settlement]] = []
        sent: list[Outgoing] = []
        while True:
            try:
                delivery, work = self._from_other_threads.get_nowait()
            except Empty:
                break
            if delivery is None:
                sent.append(work)
            elif self._pending.get(id(delivery)) is not delivery:
                sent += self._caused_by_stale(delivery, work)
            else:
                del self._pending[id(delivery)]
                settled.append((delivery, work))
        try:
            self._carry_out(settled, sent)
        except BaseException:
            # Taken together, not lost together: what other threads sent goes out after the
            # reconnect (consumers deduplicate by id); the deliveries come back from the broker.
            for message in sent:
                self._from_other_threads.put((None, message))
            raise

    def _caused_by_stale(self, delivery: Delivery, settlement: Settlement) -> tuple[Outgoing, ...]:
        """A delivery whose channel died meanwhile: the broker redelivers it, so it is not
        settled; what it caused is still published (consumers deduplicate by id)."""
        log.warning(
            "consumer.stale_delivery",
            queue=self._queue.name,
            bundle_id=delivery.correlation_id,
            message_id=delivery.message_id,
        )
        return settlement.publish if isinstance(settlement, Ack) else ()

    def _carry_out(
        self, settled: Sequence[tuple[Delivery, Settlement]], sent: Sequence[Outgoing] = ()
    ) -> None:
        """Carry out settlements, with `sent` (messages with no delivery to settle): all they
        publish goes out in one confirmed batch (one round trip to the broker), and only then
        are their deliveries acknowledged (`_acknowledge_due`). A parked message is copied to
        its parking lot with the reason: dead-lettering by reject would lose the reason, and
        the in-memory transport would drop the message."""
        publish = list(sent)
        for delivery, settlement in settled:
            match settlement:
                case Ack():
                    publish += settlement.publish
                case Park(reason=reason):
                    publish.append(self._parked_copy(delivery, reason))
                case RetryLater():
                    publish += self._delayed.schedule(delivery)
                case Hold():
                    raise AssertionError("a hold is carried out by not handing over")
        self._publisher.publish_many(publish)
        if self._before_ack_failpoint and any(isinstance(s, Ack) for _, s in settled):
            failpoint(self._before_ack_failpoint)
        for _, settlement in settled:
            if isinstance(settlement, Park):
                parking = topology.parking_queue(self._queue.name)
                log.error("consumer.parked", queue=parking, reason=settlement.reason)
        if settled and not self._settled:
            self._ack_due = time.monotonic() + ACK_WITHIN_SECONDS
        self._settled += [delivery for delivery, _ in settled]

    def _acknowledge_due(self, *, now: bool = False) -> None:
        """Ack the settled deliveries once the first has waited ACK_WITHIN_SECONDS, or half
        the prefetch waits (the broker sends no more than the prefetch unacknowledged)."""
        due = now or time.monotonic() >= self._ack_due
        if self._settled and (due or 2 * len(self._settled) >= self._prefetch):
            self._acknowledge(self._settled)
            self._settled = []

    def _acknowledge(self, acked: Sequence[Delivery]) -> None:
        """Ack `acked`: with one `multiple` ack (one frame, one settlement in the broker)
        those whose tags lie below every delivery still unsettled on the channel, since such
        an ack settles every earlier delivery; singly the rest. The in-memory transport
        ignores `multiple`, so there each is acked alone."""
        together: list[Delivery] = []
        if len(acked) > 1 and not self._broker.is_memory:
            unsettled = [_tag(delivery) for delivery in (*self._waiting, *self._pending.values())]
            lowest_unsettled = min(unsettled, default=None)
            together = [
                delivery
                for delivery in acked
                if lowest_unsettled is None or _tag(delivery) < lowest_unsettled
            ]
        if len(together) > 1:
            max(together, key=_tag).transport_message.ack(multiple=True)
        else:
            together = []
        acked_together = {id(delivery) for delivery in together}
        for delivery in acked:
            if id(delivery) not in acked_together:
                delivery.transport_message.ack()

    def _parked_copy(self, delivery: Delivery, reason: str) -> Outgoing:
        """`delivery` for this queue's parking lot, with the reason."""
        return delivery.copy_to(
            topology.dead_letter_exchange(self._queue.name),
            topology.parking_queue(self._queue.name),
            {
                **delivery.headers,
                REFUSED_REASON_HEADER: reason,
                SOURCE_QUEUE_HEADER: self._queue.name,
                REFUSED_AT_HEADER: datetime.now(UTC).isoformat(),
            },
        )

    def _wait_for_pending(self) -> None:
        deadline = time.monotonic() + self._grace_seconds
        while self._pending and time.monotonic() < deadline:
            self._carry_out_from_other_threads()
            time.sleep(0.02)
        self._carry_out_from_other_threads()
        self._acknowledge_due(now=True)
        if self._pending:
            log.warning("consumer.stopped_with_work_pending", count=len(self._pending))

    def _check_liveness(self, queue: Queue) -> None:
        """Detect a consumer the broker no longer feeds (kombu #670): if messages are
        ready, there is room for them, and none came for a while, reconnect."""
        now = time.monotonic()
        if now - self._last_liveness_check < self._liveness_seconds:
            return
        self._last_liveness_check = now
        busy = len(self._pending) + len(self._waiting) + len(self._settled) >= self._prefetch
        if busy or now - self._last_delivery < self._liveness_seconds:
            return
        ready = queue.queue_declare(passive=True).message_count
        if ready:
            raise ConsumerStalled(f"{ready} messages ready in {self._queue.name}, none delivered")


def _tag(delivery: Delivery) -> int:
    tag: int = delivery.transport_message.delivery_tag
    return tag
