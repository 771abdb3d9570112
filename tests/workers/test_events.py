"""Task events reach a monitor (`celery -A project events`, Flower) from real workers."""

import threading
import time
from typing import Any

import pytest

from project.celery import app
from workers.tasks import ping

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def test_workers_send_task_events_a_monitor_can_follow(start_worker):
    start_worker()
    seen: list[tuple[str, str]] = []

    def record(event: dict[str, Any]) -> None:
        seen.append((event["type"], event.get("name") or event.get("uuid", "")))

    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": record})
        sender = threading.Timer(1.0, lambda: ping.delay("watched").get(timeout=30))
        sender.start()
        deadline = time.monotonic() + 30
        for _ in receiver.itercapture(limit=None, timeout=5, wakeup=True):
            types = {kind for kind, _ in seen}
            if {"task-sent", "task-received", "task-started", "task-succeeded"} <= types:
                break
            if time.monotonic() > deadline:
                break
        sender.join()
    types = {kind for kind, _ in seen}
    assert {"task-sent", "task-received", "task-started", "task-succeeded"} <= types, types
    assert ("task-received", "workers.tasks.ping") in seen
