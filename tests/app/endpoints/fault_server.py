"""A fault-injecting HTTP server for the endpoint client's tests.

It runs on 127.0.0.1 in a thread and is either an OpenAI-compatible server itself (fast, no
model: it answers `answer to: <last message>`) or a proxy in front of a real one (`upstream`).
Faults are scripted in order: each request to a fault's path takes the next one (429 with
Retry-After, 5xx, 401, a dropped connection, an answer slower than the client's timeout, a
body that is not JSON, a redirect, an answer streamed in chunks with no length, slowly or
fast, ...); requests with no fault left are served normally. The server counts what it
receives and the most requests it had in flight at once.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, cast

import httpx

CHAT = "/v1/chat/completions"
MODELS = "/v1/models"


@dataclass(frozen=True)
class Fault:
    kind: Literal["status", "drop", "slow", "body", "stream"]
    status: int = 200
    retry_after: str | None = None
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0
    path: str = CHAT
    headers: tuple[tuple[str, str], ...] = ()
    chunks: int = 0  # "stream": `body` sent this many times, `delay_s` apart


def status(
    code: int, *, retry_after: str | None = None, message: str | None = None, path: str = CHAT
) -> Fault:
    text = message or f"injected {code}"
    body = json.dumps({"error": {"message": text, "code": code}}).encode()
    return Fault("status", status=code, retry_after=retry_after, body=body, path=path)


def drop(path: str = CHAT) -> Fault:
    """Read the request, then close the socket without a word."""
    return Fault("drop", path=path)


def slow(seconds: float, path: str = CHAT) -> Fault:
    """Hold the request for `seconds` before serving it: beyond a short client timeout."""
    return Fault("slow", delay_s=seconds, path=path)


def body(
    data: bytes,
    content_type: str,
    path: str = CHAT,
    *,
    code: int = 200,
    headers: tuple[tuple[str, str], ...] = (),
) -> Fault:
    """Answer `code` with this body (not JSON, or JSON that is not a chat completion) and
    these extra headers (a redirect's Location, a Content-Encoding)."""
    return Fault("body", status=code, body=data, content_type=content_type, path=path,
                 headers=headers)  # fmt: skip


def stream(
    chunk: bytes,
    chunks: int,
    every_s: float = 0.0,
    path: str = CHAT,
    *,
    headers: tuple[tuple[str, str], ...] = (),
) -> Fault:
    """Answer 200 with `chunk` repeated `chunks` times, `every_s` apart, by default with no
    Content-Length (the body ends when the connection closes): a flood or a drip."""
    return Fault("stream", body=chunk, chunks=chunks, delay_s=every_s, path=path,
                 headers=headers)  # fmt: skip


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None
    body: bytes
    host: str | None = None  # the Host header: the name the client was given


class FaultServer:
    def __init__(
        self,
        *,
        upstream: str | None = None,
        models: Sequence[str] = ("test-model",),
        context_window: int | None = 4096,
        answer_delay_s: float = 0.0,
        max_prompt_words: int | None = None,
        api_key: str | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/").removesuffix("/v1") if upstream else None
        self.models = tuple(models)
        self.context_window = context_window
        self.answer_delay_s = answer_delay_s
        self.max_prompt_words = max_prompt_words
        self.api_key = api_key
        self.seen: list[Seen] = []
        self.max_in_flight = 0
        self.streams_finished = 0  # "stream" faults sent to the end: the client read it all
        self._in_flight = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._upstream_http = httpx.Client(timeout=300) if upstream else None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        # A short poll interval: stopping the server waits for the loop's next look.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def count(self, path: str = CHAT) -> int:
        with self._lock:
            return sum(1 for seen in self.seen if seen.path == path)

    def faults_left(self) -> int:
        with self._lock:
            return len(self._faults)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()  # releases handlers that hold a slow answer
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._upstream_http is not None:
            self._upstream_http.close()

    # -- called by the handler threads --

    def _enter(self, seen: Seen) -> Fault | None:
        with self._lock:
            self.seen.append(seen)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            for fault in self._faults:
                if fault.path == seen.path:
                    self._faults.remove(fault)
                    return fault
        return None

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _pause(self, seconds: float) -> bool:
        """Wait; False when the server is stopping meanwhile."""
        return not self._stopping.wait(seconds)

    def _answer(self, seen: Seen) -> tuple[int, str, bytes, dict[str, str]]:
        if self.upstream is not None:
            return self._forward(seen)
        if self.api_key and seen.authorization != f"Bearer {self.api_key}":
            given = (seen.authorization or "").removeprefix("Bearer ")
            # Like some real APIs, echo the key back: the client must not pass it on.
            return _json(401, {"error": {"message": f"Incorrect API key provided: {given}"}})
        if seen.method == "GET" and seen.path == MODELS:
            data = [
                {"id": m, "object": "model", "max_model_len": self.context_window}
                for m in self.models
            ]
            return _json(200, {"object": "list", "data": data})
        if seen.method == "POST" and seen.path == CHAT:
            return self._complete(json.loads(seen.body))
        return _json(404, {"detail": "Not Found"})

    def _complete(self, request: dict[str, object]) -> tuple[int, str, bytes, dict[str, str]]:
        model = request.get("model")
        if model not in self.models:
            message = (
                f"The model `{model}` does not exist. Valid aliases: {', '.join(self.models)}."
            )
            return _json(404, {"error": {"message": message, "code": 404}})
        messages = cast(list[dict[str, str]], request["messages"])
        words = sum(len(m["content"].split()) for m in messages)
        if self.max_prompt_words is not None and words > self.max_prompt_words:
            message = f"This model's maximum context length is {self.max_prompt_words} tokens"
            return _json(400, {"error": {"message": message, "code": 400}})
        text = f"answer to: {messages[-1]['content']}"
        return _json(
            200,
            {
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": words, "completion_tokens": len(text.split())},
            },
        )

    def _forward(self, seen: Seen) -> tuple[int, str, bytes, dict[str, str]]:
        assert self._upstream_http is not None
        headers = {"content-type": "application/json"}
        if seen.authorization:
            headers["authorization"] = seen.authorization
        response = self._upstream_http.request(
            seen.method, f"{self.upstream}{seen.path}", content=seen.body or None, headers=headers
        )
        kind = response.headers.get("content-type", "application/octet-stream")
        return response.status_code, kind, response.content, {}


def _json(code: int, data: object) -> tuple[int, str, bytes, dict[str, str]]:
    return code, "application/json", json.dumps(data).encode(), {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers and httpx's pool expect

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the tests read the counters, not a log

    def _handle(self) -> None:
        owner = cast(_Server, self.server).owner
        length = int(self.headers.get("content-length") or 0)
        seen = Seen(
            self.command,
            self.path,
            self.headers.get("authorization"),
            self.rfile.read(length) if length else b"",
            self.headers.get("host"),
        )
        fault = owner._enter(seen)
        try:
            self._reply(owner, seen, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout); nothing to do
        finally:
            owner._leave()

    def _reply(self, owner: FaultServer, seen: Seen, fault: Fault | None) -> None:
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "slow" and not owner._pause(fault.delay_s):
            self.close_connection = True
            return
        if owner.answer_delay_s:  # every answer, a fault's or not, takes this long
            owner._pause(owner.answer_delay_s)
        if fault is not None and fault.kind == "stream":
            self._stream(owner, fault)
            return
        if fault is not None and fault.kind in ("status", "body"):
            headers = {"retry-after": fault.retry_after} if fault.retry_after else {}
            self._send(fault.status, fault.content_type, fault.body, headers | dict(fault.headers))
            return
        self._send(*owner._answer(seen))

    def _stream(self, owner: FaultServer, fault: Fault) -> None:
        self.close_connection = True  # no length: the body ends with the connection
        self.send_response(fault.status)
        self.send_header("content-type", fault.content_type)
        self.send_header("connection", "close")
        for name, value in fault.headers:
            self.send_header(name, value)
        self.end_headers()
        for _ in range(fault.chunks):
            if fault.delay_s and not owner._pause(fault.delay_s):
                return
            self.wfile.write(fault.body)
            self.wfile.flush()
        with owner._lock:
            owner.streams_finished += 1

    def _send(self, code: int, content_type: str, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
