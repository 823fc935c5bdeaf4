"""The peer: the newborn workflow as a Celery canvas, as a Python team would write it.

    chain(group(birth_medical_certificate, vaccination_certificate),
          birth_registration, medical_insurance, social_security_card, collect)

Same RabbitMQ (a quorum queue, persistent messages, publisher confirms, late acks so a
task survives a worker crash as our items do), a Redis result backend, and one worker
with two prefork processes. Each task answers at once, as the bench departments do.
Driven as Lianban is: a closed loop of clients, and an open loop at a fixed rate.
The worker runs `celery -A bench.celery_peer worker`; the broker and backend come from
LIANBAN_BENCH_CELERY_BROKER and LIANBAN_BENCH_REDIS_URL.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

from celery import Celery, chain, group
from celery.exceptions import TimeoutError as ResultTimeout
from kombu import Exchange, Queue

QUEUE = "bench.newborn"

app = Celery(
    "lianban_bench_peer",
    broker=os.environ.get("LIANBAN_BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1//"),
    backend=os.environ.get("LIANBAN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
)
app.conf.update(
    task_queues=[
        Queue(
            QUEUE,
            Exchange(QUEUE),
            routing_key=QUEUE,
            durable=True,
            queue_arguments={"x-queue-type": "quorum"},
        )
    ],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_default_delivery_mode="persistent",
    broker_transport_options={"confirm_publish": True},
    task_acks_late=True,
    task_serializer="json",
    result_serializer="json",
    result_expires=600,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


def _certificate(name: str, application: dict[str, Any]) -> dict[str, Any]:
    return {
        "certificate_name": name,
        "certificate_number": f"BENCH-{application['project_no']}-{name}",
        "issue_date": date.today().isoformat(),
    }


@app.task
def birth_medical_certificate(application: dict[str, Any]) -> dict[str, Any]:
    return _certificate("birth_medical_certificate", application)


@app.task
def vaccination_certificate(application: dict[str, Any]) -> dict[str, Any]:
    return _certificate("vaccination_certificate", application)


@app.task
def birth_registration(
    health: list[dict[str, Any]], application: dict[str, Any]
) -> list[dict[str, Any]]:
    return [*health, _certificate("birth_registration", application)]


@app.task
def medical_insurance(
    done: list[dict[str, Any]], application: dict[str, Any]
) -> list[dict[str, Any]]:
    return [*done, _certificate("medical_insurance_parent_insured", application)]


@app.task
def social_security_card(
    done: list[dict[str, Any]], application: dict[str, Any]
) -> list[dict[str, Any]]:
    return [*done, _certificate("social_security_card_application", application)]


@app.task
def collect(done: list[dict[str, Any]], application: dict[str, Any]) -> dict[str, Any]:
    return {"project_no": application["project_no"], "outcome": "all_approved", "items": done}


def newborn_canvas(application: dict[str, Any]) -> Any:
    return chain(
        group(birth_medical_certificate.s(application), vaccination_certificate.s(application)),
        birth_registration.s(application),
        medical_insurance.s(application),
        social_security_card.s(application),
        collect.s(application),
    )


def closed_loop(
    applications: Sequence[dict[str, Any]], clients: int, seconds: float
) -> tuple[list[float], float]:
    """Each client thread applies a canvas and waits for its result, until `seconds`
    pass; returns each bundle's seconds from apply to result, and the elapsed time."""
    pending = list(reversed(applications))
    lock = threading.Lock()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if not pending:
                    return
                application = pending.pop()
            sent = time.monotonic()
            newborn_canvas(application).apply_async().get(timeout=60)
            with lock:
                latencies.append(time.monotonic() - sent)

    start = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.monotonic() - start


WAITERS = 64
"""Threads waiting for results in the open loop: a result is timed when its waiter
returns, so this bounds how many finished canvases are timed at once."""


def open_loop(
    applications: Sequence[dict[str, Any]], rate: float, reply_timeout: float = 60
) -> tuple[list[float | None], float]:
    """Applies a canvas per application at `rate` per second on a fixed schedule,
    whatever the results do; returns each bundle's seconds from apply to result (None
    if none came within `reply_timeout`) and the time from the first apply to the last
    result."""

    def waited(sent: float, result: Any) -> tuple[float | None, float]:
        try:
            result.get(timeout=reply_timeout)
        except ResultTimeout:
            return None, time.monotonic()
        done = time.monotonic()
        return done - sent, done

    with ThreadPoolExecutor(WAITERS) as waiters:
        start = time.monotonic()
        pending = []
        for index, application in enumerate(applications):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.monotonic()
            pending.append(waiters.submit(waited, sent, newborn_canvas(application).apply_async()))
        outcomes = [future.result() for future in pending]
    return [latency for latency, _ in outcomes], max(done for _, done in outcomes) - start
