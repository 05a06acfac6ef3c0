"""The client of the language-model server (vLLM locally, any OpenAI-protocol server elsewhere).

It wraps llama-index's ``OpenAILike`` and adds what the answer layer needs:

* one retry policy: up to ``llm_retries`` quick retries when the connection fails
  before anything was received (a server restarting). Timeouts are not retried:
  the user would wait ``llm_timeout`` several times over. The retries built into
  llama-index and the openai package are switched off so they don't multiply.
* two errors with plain messages: ``LLMUnavailable`` (server down, too slow, died
  mid-answer; the message names the URL and the fix) and ``LLMRequestError`` (the
  server refused this request, e.g. a prompt longer than the context window).
* cancellation: ``stream()`` is a generator; closing it (the caller went away)
  closes the HTTP stream, and vLLM aborts the generation.
* token counting so the answer layer can fit its sources into the context window.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path

import httpx
import openai
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike
from pydantic import Field

from rag import llm_server
from rag.settings import Settings

Messages = str | Sequence[ChatMessage | Mapping[str, str]]

# Chat-template tokens around each message (``<|im_start|>role\n ... <|im_end|>\n``).
MESSAGE_OVERHEAD_TOKENS = 8
# Room for a system prompt the template may add and the assistant's opening tag.
TEMPLATE_MARGIN_TOKENS = 32
# Without the model's tokenizer, assume this few characters per token (overestimates tokens).
CHARS_PER_TOKEN = 3.5
# Finish reasons of an answer that ended normally; vLLM reports "abort" or "error" otherwise.
COMPLETE = frozenset({"stop", "length", "tool_calls", "function_call", "content_filter"})


class LLMUnavailable(RuntimeError):
    """The server can't be reached, is too slow, or stopped mid-answer."""


class LLMRequestError(RuntimeError):
    """The server refused this particular request (e.g. the prompt is too long)."""


class PrivateOpenAILike(OpenAILike):
    """``OpenAILike`` whose API key stays out of repr and dumps (llama-index events carry model dumps)."""

    api_key: str | None = Field(default=None, exclude=True, repr=False)


def make_llm(settings: Settings, http_client: httpx.Client | None = None) -> OpenAILike:
    """The llama-index LLM for our server; every setting explicit, so nothing falls back to a cloud default."""
    return PrivateOpenAILike(
        model=settings.llm_model,
        api_base=settings.effective_llm_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
        is_chat_model=True,
        is_function_calling_model=False,
        context_window=settings.llm_context_window,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        additional_kwargs={"extra_body": settings.llm_sampling} if settings.llm_sampling else {},
        timeout=settings.llm_timeout,
        max_retries=0,  # our own bounded retry below
        # trust_env=False: proxy variables must not route private prompts anywhere.
        http_client=http_client or httpx.Client(trust_env=False),
    )


def server_message(exc: openai.APIStatusError) -> str:
    """The server's own sentence from an OpenAI-style error body, else the client's summary."""
    body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) and message else exc.message


def to_chat_messages(messages: Messages) -> list[ChatMessage]:
    if isinstance(messages, str):
        return [ChatMessage(role="user", content=messages)]
    return [
        m if isinstance(m, ChatMessage) else ChatMessage(role=m["role"], content=m["content"])
        for m in messages
    ]


class TokenCounter:
    """Counts and cuts tokens with the served model's own tokenizer, or a cautious estimate."""

    def __init__(self, tokenizer_file: Path | None):
        self._tokenizer = None
        if tokenizer_file is not None and tokenizer_file.exists():
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(tokenizer_file))

    @property
    def exact(self) -> bool:
        return self._tokenizer is not None

    def count(self, text: str) -> int:
        if self._tokenizer is None:
            return math.ceil(len(text) / CHARS_PER_TOKEN)
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of ``text`` with at most ``max_tokens`` tokens."""
        if max_tokens <= 0:
            return ""
        if self._tokenizer is None:
            return text[: int(max_tokens * CHARS_PER_TOKEN)]
        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        return text if len(offsets) <= max_tokens else text[: offsets[max_tokens - 1][1]]


class LLMClient:
    """What the answer layer calls: ``complete``, ``stream``, ``health``, ``models`` and token budgets."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.effective_llm_base_url
        # The HTTP responses each thread's current stream opened, so closing the stream
        # can close its connection. llama-index keeps the openai stream in a reference
        # cycle, which would otherwise only be closed at garbage collection.
        self._opened = threading.local()
        http = httpx.Client(trust_env=False, event_hooks={"response": [self._remember_response]})
        self.llm = make_llm(settings, http)

    def _remember_response(self, response: httpx.Response) -> None:
        opened = getattr(self._opened, "responses", None)
        if opened is not None:
            opened.append(response)

    # --- Generation ---------------------------------------------------------

    def complete(self, messages: Messages) -> str:
        chat = to_chat_messages(messages)
        return self._retrying(lambda: self.llm.chat(chat).message.content or "")

    def stream(self, messages: Messages) -> Iterator[str]:
        """Yield the answer's text as it is generated. Closing the generator cancels the request."""
        chat = to_chat_messages(messages)

        def open_stream():
            chunks = iter(self.llm.stream_chat(chat))
            return chunks, next(chunks, None)  # the request is sent here

        self._opened.responses = opened = []
        try:
            chunks, response = self._retrying(open_stream)
        finally:
            self._opened.responses = None
        finished = False
        try:
            while response is not None:
                choices = getattr(response.raw, "choices", None) or []
                finished = finished or any(c.finish_reason in COMPLETE for c in choices)
                if response.delta:
                    yield response.delta
                response = next(chunks, None)
        except (openai.APIError, httpx.HTTPError) as exc:
            raise self._translate(exc, mid_stream=True) from None
        finally:
            chunks.close()
            for http_response in opened:
                http_response.close()  # the server sees the disconnect and aborts the generation
        if not finished:
            raise LLMUnavailable(
                f"the LLM server at {self.url} stopped in the middle of an answer; {self._fix()}"
            )

    def _retrying(self, call):
        """Run ``call``; retry quick connection failures (not timeouts) up to ``llm_retries`` times."""
        retries = self.settings.llm_retries
        for attempt in range(retries + 1):
            try:
                return call()
            except openai.APITimeoutError as exc:
                raise self._translate(exc) from None
            except openai.APIConnectionError as exc:
                if attempt == retries:
                    raise self._translate(exc) from None
                time.sleep(min(0.5 * 2**attempt, 4.0))
            except (openai.APIError, httpx.HTTPError) as exc:
                raise self._translate(exc) from None
        raise AssertionError("unreachable")

    # --- Server ---------------------------------------------------------------

    def health(self) -> bool:
        return self._probe()["up"]

    def models(self) -> list[str]:
        return self._probe()["models"]

    def _probe(self) -> dict:
        return llm_server.probe(self.url, api_key=self.settings.llm_api_key.get_secret_value())

    # --- Token budget -----------------------------------------------------------

    @cached_property
    def tokens(self) -> TokenCounter:
        """The local model's tokenizer when we talk to the local server, else an estimate."""
        local = llm_server.is_local(self.settings)
        return TokenCounter(llm_server.model_dir(self.settings) / "tokenizer.json" if local else None)

    @property
    def prompt_budget(self) -> int:
        """Tokens the messages may use so that the answer still fits in the context window."""
        return self.settings.llm_context_window - self.settings.llm_max_tokens - TEMPLATE_MARGIN_TOKENS

    def count_tokens(self, messages: Messages) -> int:
        chat = to_chat_messages(messages)
        return sum(self.tokens.count(m.content or "") + MESSAGE_OVERHEAD_TOKENS for m in chat)

    def fits(self, messages: Messages) -> bool:
        return self.count_tokens(messages) <= self.prompt_budget

    # --- Errors ------------------------------------------------------------------

    def _fix(self) -> str:
        if llm_server.is_local(self.settings):
            return "start it with `rag llm start` (check it with `rag llm status`)"
        return "check that the server named by RAG_LLM_BASE_URL is running"

    def _translate(self, exc: Exception, mid_stream: bool = False) -> RuntimeError:
        url, window = self.url, self.settings.llm_context_window
        if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
            return LLMUnavailable(
                f"the LLM server at {url} did not answer within {self.settings.llm_timeout:g} s "
                f"(RAG_LLM_TIMEOUT); {self._fix()}"
            )
        if mid_stream or isinstance(exc, httpx.HTTPError):
            return LLMUnavailable(
                f"the LLM server at {url} stopped in the middle of an answer; {self._fix()}"
            )
        if isinstance(exc, openai.APIConnectionError):
            return LLMUnavailable(f"cannot reach the LLM server at {url}; {self._fix()}")
        if isinstance(exc, openai.AuthenticationError):
            return LLMRequestError(f"the LLM server at {url} refused the API key (RAG_LLM_API_KEY)")
        if isinstance(exc, openai.NotFoundError):
            return LLMRequestError(
                f"the LLM server at {url} does not serve the model '{self.settings.llm_model}' (RAG_LLM_MODEL)"
            )
        if isinstance(exc, openai.BadRequestError) and "context length" in str(exc).lower():
            return LLMRequestError(
                f"the prompt is too long for the model's context window of {window} tokens "
                f"(answer included: {self.settings.llm_max_tokens}); use fewer or shorter sources"
            )
        if isinstance(exc, openai.APIStatusError) and exc.status_code < 500:
            hint = f" (RAG_LLM_SAMPLING is {self.settings.llm_sampling})" if self.settings.llm_sampling else ""
            return LLMRequestError(
                f"the LLM server at {url} refused the request ({exc.status_code}): {server_message(exc)}{hint}"
            )
        return LLMUnavailable(f"the LLM server at {url} failed ({type(exc).__name__}); {self._fix()}")
