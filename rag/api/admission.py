"""Admission control for answers: at most ``api_max_concurrent_answers`` generations run at
once; the others wait their turn (up to ``api_request_timeout``) instead of all reaching
the model server together, where every one of them would slow down until they time out."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool

from rag.api.streaming import next_event


class AnswerSlots:
    def __init__(self, limit: int, wait: float):
        self.limit = limit
        self.wait = wait
        self._free = threading.BoundedSemaphore(limit)

    def acquire(self) -> None:
        """Block (in a worker thread) until a slot is free; 503 after ``wait`` seconds."""
        if not self._free.acquire(timeout=self.wait):
            raise HTTPException(
                status_code=503, headers={"Retry-After": "10"},
                detail=f"The server is busy: {self.limit} answers are being written and others are "
                f"waiting; no turn came within {self.wait:g} s. Retry shortly.")

    def release(self) -> None:
        self._free.release()


async def answer_in_slot(slots: AnswerSlots, ask: Callable[[], Any]) -> Any:
    """Run a blocking ``ask()`` in a worker thread once a slot is free."""
    await run_in_threadpool(slots.acquire)
    try:
        return await run_in_threadpool(ask)
    finally:
        slots.release()


async def open_answer_stream(slots: AnswerSlots, start: Callable[[], Iterator]) -> tuple[Iterator, Any]:
    """Take a slot, start the event iterator and pull its first event (the model's first token,
    or the final answer when there is nothing to generate). The caller releases the slot:
    through the EventStream's ``on_close``, or `close_answer_stream`."""
    await run_in_threadpool(slots.acquire)
    events = None
    try:
        events = start()
        return events, await next_event(events)
    except BaseException:
        close_answer_stream(slots, events)
        raise


def close_answer_stream(slots: AnswerSlots, events: Iterator | None) -> None:
    if events is not None:
        events.close()
    slots.release()
