"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests.

It speaks the real wire protocol (POST /v1/chat/completions, POST /v1/embeddings), so the real
openai client and LangChain run unmodified against it. Each chat request consumes the next scripted
step; when the script runs out, `default` answers. Every request body is recorded.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


@dataclass
class Step:
    """One scripted answer: a JSON content string, an HTTP error status, and/or a delay."""

    content: str | None = None
    status: int = 200
    delay_s: float = 0.0

    @classmethod
    def answer(cls, payload: dict[str, Any] | str, delay_s: float = 0.0) -> Step:
        content = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        return cls(content=content, delay_s=delay_s)

    @classmethod
    def error(cls, status: int) -> Step:
        return cls(status=status)


@dataclass
class ScriptedOpenAI:
    host: str = "127.0.0.1"
    port: int = 0
    script: deque[Step] = field(default_factory=deque)
    default: Step | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    raw_bodies: list[bytes] = field(default_factory=list)
    embedding_dim: int = 64
    latency_s: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0  # the most chat/embedding requests the server was answering at once

    def __post_init__(self) -> None:
        server = self
        counting = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                server.raw_bodies.append(body)
                data = json.loads(body or b"{}")
                server.requests.append({"path": self.path, "body": data})
                with counting:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.latency_s:
                        time.sleep(server.latency_s)
                    if self.path.endswith("/embeddings"):
                        self._embeddings(data)
                    elif self.path.endswith("/chat/completions"):
                        self._chat(data)
                    else:
                        self._send(404, {"error": {"message": "not found"}})
                finally:
                    with counting:
                        server.in_flight -= 1

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                out = json.dumps(payload, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(out)))
                    # No keep-alive: clients then hold no idle sockets to leak at exit.
                    self.send_header("connection", "close")
                    self.close_connection = True
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    pass

            def _chat(self, data: dict[str, Any]) -> None:
                step = server.script.popleft() if server.script else server.default
                if step is None:
                    self._send(500, {"error": {"message": "script exhausted", "type": "server_error"}})
                    return
                if step.delay_s:
                    time.sleep(step.delay_s)
                if step.status != 200:
                    self._send(
                        step.status,
                        {"error": {"message": f"scripted {step.status}", "type": "scripted", "code": None}},
                        {"retry-after-ms": "10"},
                    )
                    return
                prompt_tokens = sum(len(str(m.get("content", ""))) for m in data.get("messages", []))
                completion = step.content or ""
                self._send(
                    200,
                    {
                        "id": "chatcmpl-scripted",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": data.get("model", "scripted"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": completion},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": len(completion),
                            "total_tokens": prompt_tokens + len(completion),
                        },
                    },
                )

            def _embeddings(self, data: dict[str, Any]) -> None:
                inputs = data.get("input", [])
                if isinstance(inputs, str):
                    inputs = [inputs]
                rows = []
                for i, text in enumerate(inputs):
                    seed = int.from_bytes(hashlib.sha256(str(text).encode()).digest()[:4], "little")
                    vec = np.random.default_rng(seed).normal(size=server.embedding_dim)
                    rows.append({"object": "embedding", "index": i, "embedding": (vec / np.linalg.norm(vec)).tolist()})
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": rows,
                        "model": data.get("model"),
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )

        self._httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> ScriptedOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"].endswith("/chat/completions")]
