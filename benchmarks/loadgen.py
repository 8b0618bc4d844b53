"""A lean HTTP/1.1 load generator: asyncio, one keep-alive connection per client, no HTTP library.

On a 2-core machine the load generator shares the CPUs with the server and the database, so what it
spends per request is taken from the server being measured. Twenty threads of httpx spent about as
much CPU per request as a cheap endpoint does; this client spends a few tens of microseconds, so the
figures are the server's. It speaks only what the benchmarks need: requests with a JSON or empty
body, responses with Content-Length (uvicorn answers every JSON response of this API that way).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from bench_triage import percentile


class HttpError(RuntimeError):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self._head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None, "open() first"
        target = f"{path}?{urlencode(params)}" if params else path
        payload = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        extra = f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n" if body is not None else ""
        self._writer.write(f"{method} {target} HTTP/1.1\r\n{self._head}{extra}\r\n".encode() + payload)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise HttpError(f"{method} {path}: chunked responses are not supported by this client")
        if length is None:
            raise HttpError(f"{method} {path}: response without Content-Length")
        return status, await self._reader.readexactly(length)

    async def json(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        status, data = await self.request(method, path, params, body)
        if status >= 400:
            raise HttpError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data)


Call = Callable[[Conn, int], Awaitable[int]]


async def _run(
    base: tuple[str, int],
    headers: dict[str, str],
    clients: int,
    per_client: int,
    call: Call,
    rate_per_client: float | None,
) -> dict[str, Any]:
    conns = [Conn(*base, headers) for _ in range(clients)]
    for c in conns:
        await c.open()
        await c.request("GET", "/healthz")  # connected and warm before the clock starts
    latencies: list[float] = []
    errors: list[int] = []
    loop_start = time.perf_counter()

    async def client(k: int, conn: Conn) -> None:
        t0 = loop_start + (k / clients / rate_per_client if rate_per_client else 0)
        for i in range(per_client):
            if rate_per_client:
                due = t0 + i / rate_per_client
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            else:
                due = time.perf_counter()
            status = await call(conn, k * per_client + i)
            latencies.append(time.perf_counter() - due)
            if status >= 400:
                errors.append(status)

    try:
        await asyncio.gather(*(client(k, c) for k, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    wall = time.perf_counter() - loop_start
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(ms),
        "errors": len(errors),
        "offered_rps": round(clients * rate_per_client, 1) if rate_per_client else None,
        "p50_ms": round(percentile(ms, 0.50), 1),
        "p95_ms": round(percentile(ms, 0.95), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "rps": round(len(ms) / wall, 1),
    }


def run_clients(
    base: tuple[str, int],
    headers: dict[str, str],
    clients: int,
    per_client: int,
    call: Call,
    rate_per_client: float | None = None,
) -> dict[str, Any]:
    """`clients` connections, each making `per_client` calls. Without a rate each sends its next request
    as soon as the last one answers (saturation: the most the server does, and its latency there). With
    one, each sends on a fixed schedule and latency counts from the scheduled time, so a slow server is
    not excused by the requests it delayed."""
    return asyncio.run(_run(base, headers, clients, per_client, call, rate_per_client))
