"""A thin client for the REST API, used by the web UI.

Every failure becomes an `ApiError` carrying one plain sentence a user can read; the
UI shows it as it is. The API key lives only in this object (which lives only in the
user's Streamlit session): it is sent in the Authorization header, never in a URL,
and never logged.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Iterable, Iterator
from urllib.parse import quote

import httpx

from rag.schema import Answer


class ApiError(Exception):
    """A failed API call explained in one sentence (``status`` is the HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def detail_of(response: httpx.Response) -> str:
    """The API's own sentence for an error response, or a generic one."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        return detail
    return f"The API answered with an error (HTTP {response.status_code})."


def sentence(text: str) -> str:
    """``text`` as a sentence: capital first letter, final full stop."""
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs from Server-Sent Events lines."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)


def path_of(doc_id: str) -> str:
    """A document id in a URL path (ids are file paths: keep '/', escape the rest)."""
    return quote(doc_id, safe="/")


class ApiClient:
    def __init__(self, base_url: str, key: str, *, timeout: float = 30.0, answer_timeout: float = 180.0):
        self.base_url = base_url.rstrip("/")
        self.answer_timeout = answer_timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    def close(self) -> None:
        self._http.close()

    # --- plumbing ------------------------------------------------------------------------
    def _unreachable(self) -> ApiError:
        return ApiError(f"The API at {self.base_url} cannot be reached; check that `rag serve` is running.")

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs) -> httpx.Response:
        """Send a request; any status outside 2xx (and ``ok``) raises an ApiError with the API's sentence."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiError("The API did not answer in time; try again in a moment.") from None
        except httpx.TransportError:
            raise self._unreachable() from None
        if response.is_success or response.status_code in ok:
            return response
        raise ApiError(detail_of(response), response.status_code)

    # --- identity and health ---------------------------------------------------------------
    def me(self) -> dict:
        """{key_id, name, groups, admin}; raises ApiError(status=401) for a bad key."""
        return self._request("GET", "/v1/me").json()

    def readiness(self) -> dict:
        """{ready, store, llm} from /readyz (503 means 'not ready', which is still an answer)."""
        return self._request("GET", "/readyz", ok=(503,)).json()

    # --- questions -------------------------------------------------------------------------
    def ask(self, question: str, conversation: list[dict] | None = None, top_k: int | None = None) -> Answer:
        body = {"question": question, "conversation": conversation or [], "top_k": top_k}
        response = self._request("POST", "/v1/query", json=body, ok=(503,), timeout=self.answer_timeout)
        return self._answer(response)

    def ask_stream(
        self, question: str, conversation: list[dict] | None = None, top_k: int | None = None
    ) -> Iterator[dict]:
        """Yield ``{"type": "token", "text"}`` events, then one ``{"type": "final", "answer": Answer}``.

        When the model server is down before anything streams, the API answers a plain
        503 with the retrieved sources: that arrives here as the final event too.
        """
        body = {"question": question, "conversation": conversation or [], "top_k": top_k, "stream": True}
        try:
            with self._http.stream("POST", "/v1/query", json=body, timeout=self.answer_timeout) as response:
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    response.read()
                    if response.is_success or response.status_code == 503:
                        yield {"type": "final", "answer": self._answer(response)}
                        return
                    raise ApiError(detail_of(response), response.status_code)
                for event, data in parse_sse(response.iter_lines()):
                    payload = json.loads(data)
                    if event == "token":
                        yield {"type": "token", "text": payload.get("text", "")}
                    elif event == "final":
                        yield {"type": "final", "answer": Answer.model_validate(payload)}
                    elif event == "error":
                        raise ApiError(sentence(payload.get("detail") or "the answer stopped"))
        except httpx.TimeoutException:
            raise ApiError("The answer took too long and was stopped; try a shorter question.") from None
        except httpx.TransportError:
            raise self._unreachable() from None

    def _answer(self, response: httpx.Response) -> Answer:
        try:
            return Answer.model_validate(response.json())
        except ValueError:
            raise ApiError(detail_of(response), response.status_code) from None

    # --- documents -------------------------------------------------------------------------
    def upload(self, files: list[tuple[str, bytes]], groups: list[str] | None = None) -> dict:
        """Start an ingestion job for (name, content) pairs; returns {job_id, groups, files}."""
        parts = [("files", (name, content, mimetypes.guess_type(name)[0] or "application/octet-stream"))
                 for name, content in files]
        data = {"groups": ",".join(groups)} if groups else {}
        return self._request("POST", "/v1/documents", files=parts, data=data, timeout=300.0).json()

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/v1/jobs/{quote(job_id, safe='')}").json()

    def documents(self, name: str | None = None, offset: int = 0, limit: int = 500) -> dict:
        """{total, offset, limit, items: [{doc_id, name, groups, chunks, pages, complete, ...}]}."""
        params = {"offset": offset, "limit": limit} | ({"name": name} if name else {})
        return self._request("GET", "/v1/documents", params=params).json()

    def document(self, doc_id: str) -> dict:
        return self._request("GET", f"/v1/documents/{path_of(doc_id)}").json()

    def download(self, doc_id: str) -> bytes:
        """The original file, under the same access rules as every other read."""
        return self._request("GET", f"/v1/documents/{path_of(doc_id)}/file", timeout=300.0).content

    def delete(self, doc_id: str) -> dict:
        return self._request("DELETE", f"/v1/documents/{path_of(doc_id)}").json()
