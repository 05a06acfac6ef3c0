"""Server-Sent Events from the service's blocking event iterators, with cancellation.

The service streams through a plain iterator that blocks on the model server. We pull
it in worker threads, one event at a time, and close it as soon as the response ends for
any reason; closing it closes the model request, so vLLM stops generating for a client
that went away.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from rag.llm import LLMRequestError, LLMUnavailable
from rag.store.base import StoreError

log = logging.getLogger("rag.api")

END = object()  # what next_event returns once the iterator is exhausted


def sse(data: Any, event: str | None = None) -> str:
    """One SSE message; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


async def next_event(events: Iterator) -> Any:
    """The iterator's next item, pulled in a worker thread (``END`` when exhausted)."""
    return await anyio.to_thread.run_sync(next, events, END)


class EventStream(StreamingResponse):
    """An SSE response that always closes its source iterator, even after a disconnect.

    ``render`` turns one source item into SSE messages; ``render_error`` turns an error
    raised mid-stream into a last message (headers are sent, so no status code can say
    it). ``on_cancel`` runs when the response ended before the source was exhausted: the
    client disconnected, or the server is shutting down; ``on_close`` runs at the end in
    every case.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: Iterator,
        render: Callable[[Any], list[str]],
        render_error: Callable[[str], list[str]],
        *,
        first: Any = END,
        on_cancel: Callable[[], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        self._on_close = on_close
        self._events = events
        self._first = first
        self._render = render
        self._render_error = render_error
        self._on_cancel = on_cancel
        self._finished = False
        super().__init__(self._body(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _body(self) -> AsyncIterator[str]:
        try:
            item = self._first
            while item is not END:
                for chunk in self._render(item):
                    yield chunk
                item = await next_event(self._events)
        except (LLMUnavailable, LLMRequestError, StoreError) as exc:
            message = f"the answer stopped: {exc}"
        except Exception:
            log.exception("stream failed")
            message = "the answer stopped because of an internal error; the server log has the details"
        else:
            self._finished = True
            return
        self._finished = True
        for chunk in self._render_error(message):
            yield chunk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
                close = getattr(self._events, "close", None)
                if close is not None:
                    await anyio.to_thread.run_sync(close)
                if not self._finished and self._on_cancel is not None:
                    self._on_cancel()
                if self._on_close is not None:
                    self._on_close()
