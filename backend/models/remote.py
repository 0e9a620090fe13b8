"""The omni model on an OpenAI-compatible server (vLLM, transformers serve, ...).

``RemoteEngine`` has the same interface as ``backend.models.engine.LocalEngine``: language
detection, speech recognition, voices and barge-in stay in Omnilingo; only the
answer is generated remotely, streamed over server-sent events. Images travel as
base64 data URLs. Cancelling the answer's scope ends the answer at once for the user and
closes the HTTP stream at the server's next token, which is how vLLM learns to
abort the request.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from backend.cancel import CancelScope
from backend.errors import GenerationError, ModelUnavailableError
from backend.models.engine import GenerationStats, PromptMessage
from backend.streams import ThreadStream

log = logging.getLogger(__name__)

# Longest wait for the next streamed token; a busy server with a large image may take a while to start.
DEFAULT_TIMEOUT_S = 120.0
# How often the consumer looks at the cancel scope while no token arrives.
STOP_POLL_S = 0.05
# Server messages are shown to the user: keep them short.
MAX_SERVER_MESSAGE = 300
# Answers asked of the server at once: it batches them (vLLM's continuous batching).
DEFAULT_CONCURRENCY = 8


def normalize_base_url(base_url: str) -> str:
    """``http://host:8000`` and ``http://host:8000/v1/`` both mean ``http://host:8000/v1``."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ModelUnavailableError(
            f"The server URL {base_url!r} is not an http(s) URL. Pass one like http://HOST:8000/v1 with --base-url.",
            key="remote.bad_url",
        )
    if parts.path in {"", "/"}:
        url += "/v1"
    return url


def image_data_url(image: Any) -> str:
    """A PIL image as a data URL: JPEG for opaque pictures (small), PNG when they carry transparency."""
    buffer = io.BytesIO()
    if image.mode in {"RGBA", "LA", "P"}:
        image.save(buffer, format="PNG")
        mime = "image/png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


class RemoteEngine:
    """An omni model served by an OpenAI-compatible chat-completions endpoint."""

    def __init__(
        self,
        base_url: str | None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        accepts_images: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if not base_url:
            raise ModelUnavailableError(
                "--engine openai needs the server's address: pass --base-url http://HOST:8000/v1 "
                "(or set OMNILINGO_BASE_URL).",
                key="remote.no_url",
            )
        self.base_url = normalize_base_url(base_url)
        self.model_id = model
        self.name = model or f"the model server at {self.base_url}"
        self.accepts_images = accepts_images
        # Speech is transcribed by Omnilingo's own Whisper and sent as text.
        self.accepts_audio = False
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.served_models: list[str] = []
        self._api_key = api_key
        self._loaded = False
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            # Never pick up proxies from the environment: the key must go to the server the user named.
            trust_env=False,
        )

    def __repr__(self) -> str:  # never the key
        return f"RemoteEngine(base_url={self.base_url!r}, model={self.model_id!r})"

    @property
    def loaded(self) -> bool:
        return self._loaded

    # -- errors ------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        text = " ".join(str(text).split())
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text[:MAX_SERVER_MESSAGE] + ("…" if len(text) > MAX_SERVER_MESSAGE else "")

    def _server_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return self._scrub(response.text or response.reason_phrase)
        # OpenAI and vLLM: {"error": {"message": ...}}; FastAPI: {"detail": ...}; some: {"message": ...}
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            message = error.get("message") or json.dumps(error)
        elif error:
            message = error
        elif isinstance(body, dict) and (body.get("detail") or body.get("message")):
            message = body.get("detail") or body.get("message")
            if not isinstance(message, str):
                message = json.dumps(message)
        else:
            message = response.text
        return self._scrub(message)

    def _status_error(self, response: httpx.Response, loading: bool = False) -> Exception:
        status = response.status_code
        detail = self._server_message(response)
        cls = ModelUnavailableError if loading else GenerationError
        if status in {401, 403}:
            return cls(
                f"The model server at {self.base_url} refused the API key (HTTP {status}): {detail}. "
                "Check --api-key.",
                key="remote.unauthorized", status=status,
            )
        if status == 404 and "model" in detail.lower():
            return cls(
                f"The model server at {self.base_url} does not serve {self.model_id} (HTTP 404): {detail}",
                key="remote.unknown_model", status=status,
            )
        if 400 <= status < 500:
            return cls(
                f"The model server at {self.base_url} rejected the request (HTTP {status}): {detail}",
                key="remote.rejected", status=status,
            )
        return cls(
            f"The model server at {self.base_url} failed (HTTP {status}): {detail}. Please try again.",
            key="remote.server_error", status=status,
        )

    def _transport_error(self, err: Exception, loading: bool = False, midway: bool = False) -> Exception:
        cls = ModelUnavailableError if loading else GenerationError
        if isinstance(err, httpx.ConnectError):
            return cls(
                f"Could not reach the model server at {self.base_url} (connection refused or no route). "
                "Is it running? Check --base-url.",
                key="remote.unreachable",
            )
        if isinstance(err, httpx.TimeoutException):
            return cls(
                f"The model server at {self.base_url} did not answer within {self.timeout:.0f} s. "
                "It may be overloaded; please try again.",
                key="remote.timeout",
            )
        if midway or isinstance(err, httpx.RemoteProtocolError | httpx.ReadError):
            return cls(
                f"The connection to the model server at {self.base_url} broke while it was answering. "
                "The answer is incomplete; please try again.",
                key="remote.disconnected",
            )
        return cls(
            f"Talking to the model server at {self.base_url} failed ({type(err).__name__}).",
            key="remote.failed",
        )

    # -- loading -----------------------------------------------------------------------
    def load(self, progress: Callable[[str], None] | None = None) -> None:
        """Check that the server answers and pick the model it serves."""
        if self._loaded:
            return
        report = progress or (lambda message: log.info(message))
        report(f"Connecting to the model server at {self.base_url}…")
        try:
            response = self._client.get("/models")
        except httpx.HTTPError as err:
            raise self._transport_error(err, loading=True) from None
        if response.status_code in {401, 403}:
            raise self._status_error(response, loading=True)
        served: list[str] = []
        if response.status_code < 400:
            try:
                served = [str(m["id"]) for m in response.json().get("data", []) if isinstance(m, dict) and "id" in m]
            except (ValueError, AttributeError, TypeError):
                served = []
        else:
            # Some servers have no model list (or a broken one): the first answer will tell.
            log.warning("GET %s/models answered HTTP %s; using the model as given.", self.base_url,
                        response.status_code)
        self.served_models = served
        if self.model_id is None:
            if not served:
                raise ModelUnavailableError(
                    f"The model server at {self.base_url} does not list its models: name one with --model.",
                    key="remote.no_model",
                )
            self.model_id = served[0]
        elif served and self.model_id not in served:
            raise ModelUnavailableError(
                f"The model server at {self.base_url} does not serve {self.model_id}. "
                f"It serves: {', '.join(served[:10])}. Pass one of them with --model.",
                key="remote.unknown_model",
            )
        self.name = self.model_id
        self._loaded = True
        report(f"{self.model_id} on {self.base_url} is ready.")

    def close(self) -> None:
        self._loaded = False
        self._client.close()

    # -- prompting ---------------------------------------------------------------------
    def payload(self, messages: list[PromptMessage], max_new_tokens: int) -> dict[str, Any]:
        chat: list[dict[str, Any]] = []
        for message in messages:
            images = message.images if self.accepts_images else []
            if images:
                content: Any = [{"type": "image_url", "image_url": {"url": image_data_url(img)}} for img in images]
                if message.text:
                    content.append({"type": "text", "text": message.text})
            elif message.text:
                content = message.text
            else:
                continue
            chat.append({"role": message.role, "content": content})
        return {
            "model": self.model_id,
            "messages": chat,
            "max_tokens": max_new_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            # Same as the local engine: greedy, so answers do not change between runs.
            "temperature": 0.0,
        }

    # -- generation --------------------------------------------------------------------
    def stream(
        self,
        messages: list[PromptMessage],
        scope: CancelScope,
        max_new_tokens: int = 512,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]:
        """Yield text deltas; cancelling ``scope`` ends the answer and closes the HTTP stream."""
        if not self._loaded:
            try:
                self.load()
            except ModelUnavailableError as err:
                raise GenerationError(err.message, key=err.key) from None
        stats = stats if stats is not None else GenerationStats()
        started = time.perf_counter()
        body = self.payload(messages, max_new_tokens)

        def read(emit: Callable[[tuple[str, Any]], None], stopping: Callable[[], bool]) -> None:
            self._read_stream(body, emit, stopping)

        chunks: ThreadStream[tuple[str, Any]] = ThreadStream(read, scope=scope, name="omnilingo-remote-stream", poll_s=STOP_POLL_S)
        finished = False
        try:
            for kind, value in chunks:
                if kind == "usage":
                    stats.prompt_tokens = int(value.get("prompt_tokens") or stats.prompt_tokens)
                    stats.new_tokens = int(value.get("completion_tokens") or stats.new_tokens)
                    continue
                if stats.first_token_s is None:
                    stats.first_token_s = time.perf_counter() - started
                stats.new_tokens += 1
                yield value
            finished = not scope.cancelled
        finally:
            # Not joined: the reader may sit in a network read; it closes the stream at its next line.
            chunks.close(wait=False)
            stats.total_s = time.perf_counter() - started
            stats.stopped = stats.stopped or scope.cancelled or not finished

    def _read_stream(
        self, body: dict, emit: Callable[[tuple[str, Any]], None], stopping: Callable[[], bool],
    ) -> None:
        usage_seen = False
        received_any = False
        finish_seen = False
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(response)
                for line in response.iter_lines():
                    # Leaving the with-block early closes the connection: the server stops generating.
                    if stopping():
                        return
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event names
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except ValueError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    if event.get("error"):
                        error = event["error"]
                        message = error.get("message", "") if isinstance(error, dict) else str(error)
                        raise GenerationError(
                            f"The model server at {self.base_url} failed while answering: {self._scrub(message)}",
                            key="remote.server_error",
                        )
                    if event.get("usage"):
                        usage_seen = True
                        emit(("usage", event["usage"]))
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            received_any = True
                            emit(("text", text))
                        finish_seen = finish_seen or bool(choice.get("finish_reason"))
            if not finish_seen and not stopping():
                # Neither [DONE] nor a finish reason: the server went away between two events.
                raise httpx.RemoteProtocolError("stream ended early")
        except GenerationError:
            raise
        except httpx.HTTPError as err:
            if stopping():
                return
            raise self._transport_error(err, midway=received_any or usage_seen) from None
