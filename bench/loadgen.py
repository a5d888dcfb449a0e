"""A small HTTP load generator for the serving benchmark: closed loop and open loop (steady rate).

    closed_loop(url, bodies, connections=16, seconds=20)   C clients, each sends the next request as
                                                            soon as its previous answer arrives
    open_loop(url, bodies, rate=200, seconds=20)           requests due on a fixed timetable, whatever
                                                            the server does

All requests of a run share one aiohttp connector limited to `connections` keep-alive connections.
Bodies are encoded once by the caller and reused (cycled), so the client spends its CPU on HTTP only.

Open-loop latency counts from the time a request was *due*, not from when it was sent: a server that
stalls delays every request scheduled behind the stall, and those delays are measured instead of
hidden (coordinated omission). Waiting for a free connection is part of the latency for the same
reason. How late the client itself was in sending (its own lag) is reported beside it.

The client shares the machine with the server; `LoadResult.client_cpu_s` (time.process_time of this
process over the run) says how much CPU it took.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# What a response callback gets: HTTP status, headers, body. Its return value is kept with the sample.
OnResponse = Callable[[int, Any, bytes], Any]
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(slots=True)
class Sample:
    due: float          # perf_counter time the request was due (closed loop: when it was sent)
    sent: float         # when the client got round to sending it
    done: float         # when the answer (or the error) arrived; for an unanswered request, when we gave up
    status: int         # HTTP status; 0 for a client-side error or an unanswered request
    error: str | None = None
    seen: Any = None    # what on_response returned
    answered: bool = True

    @property
    def latency_ms(self) -> float:
        return (self.done - self.due) * 1000.0

    @property
    def ok(self) -> bool:
        return self.answered and self.status == 200


@dataclass
class LoadResult:
    mode: str                       # "closed" | "open"
    connections: int
    seconds: float                  # closed loop: the planned duration; open loop: the timetable's length
    rate: float | None              # open loop: requests per second scheduled
    started: float                  # perf_counter at the start of the run
    elapsed_s: float                # start to the last answer (or the end of the drain)
    client_cpu_s: float             # process_time of this process over the run
    samples: list[Sample] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(s.answered for s in self.samples)

    @property
    def ok(self) -> int:
        return sum(s.ok for s in self.samples)

    @property
    def failed(self) -> int:
        """Answered with a status other than 200, or a client-side error (refused, reset, timeout)."""
        return sum(s.answered and not s.ok for s in self.samples)

    @property
    def unanswered(self) -> int:
        """Open loop only: still waiting when the drain period ended (counted as lost, not as fast)."""
        return sum(not s.answered for s in self.samples)

    @property
    def throughput(self) -> float:
        """Successful answers per second of the run."""
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def client_cpu_share(self) -> float:
        """The client's CPU time over the run's wall time: 1.0 is one core fully busy."""
        return self.client_cpu_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency(self, q: float) -> tuple[float, bool]:
        """The q-quantile of latency (ms) over every request, and whether it is only a lower bound
        (it falls on an unanswered request, whose latency is at least the time we waited)."""
        if not self.samples:
            return math.nan, False
        ordered = sorted(self.samples, key=lambda s: s.latency_ms)
        pick = ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
        return pick.latency_ms, not pick.answered

    def send_lag_ms(self, q: float) -> float:
        """How late the client sent requests (sent - due), q-quantile in ms: the client's own lag."""
        lags = sorted((s.sent - s.due) * 1000.0 for s in self.samples)
        return lags[min(len(lags) - 1, max(0, math.ceil(q * len(lags)) - 1))] if lags else math.nan

    def summary(self) -> dict:
        p50, p50_bound = self.latency(0.50)
        p99, p99_bound = self.latency(0.99)
        top, top_bound = self.latency(1.0)
        errors: dict[str, int] = {}
        for s in self.samples:
            if not s.ok:
                key = "unanswered" if not s.answered else (s.error or f"HTTP {s.status}")
                errors[key] = errors.get(key, 0) + 1
        return {
            "mode": self.mode, "connections": self.connections, "seconds": self.seconds, "rate": self.rate,
            "requests": len(self.samples), "ok": self.ok, "failed": self.failed, "unanswered": self.unanswered,
            "errors": errors, "elapsed_s": self.elapsed_s, "throughput_rps": self.throughput,
            "p50_ms": p50, "p99_ms": p99, "max_ms": top,
            "p50_lower_bound": p50_bound, "p99_lower_bound": p99_bound, "max_lower_bound": top_bound,
            "send_lag_p99_ms": self.send_lag_ms(0.99),
            "client_cpu_s": self.client_cpu_s, "client_cpu_share": self.client_cpu_share,
        }


def _session(connections: int, timeout_s: float):
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections, keepalive_timeout=60,
                                     enable_cleanup_closed=False, ttl_dns_cache=None)
    # No cookie jar, no automatic decompression work: the client should cost as little as it can.
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s),
                                 cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)


async def _send(session, url: str, body: bytes, due: float, on_response: OnResponse | None) -> Sample:
    sent = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=JSON_HEADERS) as response:
            payload = await response.read()
            status = response.status
            seen = on_response(status, response.headers, payload) if on_response else None
        return Sample(due, sent, time.perf_counter(), status, None if status == 200 else f"HTTP {status}", seen)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # refused, reset, timeout: a failed request, never a crash of the benchmark
        return Sample(due, sent, time.perf_counter(), 0, type(exc).__name__)


async def _closed_loop(url: str, bodies: Sequence[bytes], connections: int, seconds: float,
                       on_response: OnResponse | None, timeout_s: float) -> LoadResult:
    samples: list[Sample] = []
    counter = iter(range(1 << 62))
    async with _session(connections, timeout_s) as session:
        cpu0, started = time.process_time(), time.perf_counter()
        end = started + seconds

        async def client() -> None:
            while time.perf_counter() < end:
                body = bodies[next(counter) % len(bodies)]
                samples.append(await _send(session, url, body, time.perf_counter(), on_response))

        await asyncio.gather(*(client() for _ in range(connections)))
        finished = time.perf_counter()
        cpu = time.process_time() - cpu0
    return LoadResult("closed", connections, seconds, None, started, finished - started, cpu, samples)


async def _open_loop(url: str, bodies: Sequence[bytes], rate: float, seconds: float, connections: int,
                     on_response: OnResponse | None, timeout_s: float, drain_s: float,
                     during: Callable[[float], Any] | None) -> LoadResult:
    async with _session(connections, timeout_s) as session:
        cpu0, started = time.process_time(), time.perf_counter() + 0.01
        side = asyncio.ensure_future(during(started)) if during else None
        tasks: list[asyncio.Task] = []
        dues: list[float] = []
        while True:
            due = started + len(tasks) / rate
            if due >= started + seconds and (side is None or side.done()):
                break
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            dues.append(due)
            tasks.append(asyncio.ensure_future(_send(session, url, bodies[len(tasks) % len(bodies)], due,
                                                     on_response)))
        timetable_end = due
        # The timetable is over; give stragglers `drain_s` more, then count the rest as unanswered.
        _, pending = await asyncio.wait(tasks, timeout=max(0.0, timetable_end + drain_s - time.perf_counter()))
        gave_up = time.perf_counter()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if side is not None:
            await side  # raises what the side task raised
        samples = [t.result() if t not in pending else Sample(due, due, gave_up, 0, "unanswered", answered=False)
                   for t, due in zip(tasks, dues, strict=True)]
        finished = max((s.done for s in samples), default=gave_up)
        cpu = time.process_time() - cpu0
    return LoadResult("open", connections, timetable_end - started, rate, started, finished - started, cpu, samples)


def _run(coro):
    try:
        import uvloop  # the cheaper event loop, when installed (uvicorn[standard] brings it)

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def closed_loop(url: str, bodies: Sequence[bytes], *, connections: int = 16, seconds: float = 20.0,
                on_response: OnResponse | None = None, timeout_s: float = 30.0) -> LoadResult:
    """`connections` clients, each sending its next request as soon as the previous answer arrives."""
    return _run(_closed_loop(url, bodies, connections, seconds, on_response, timeout_s))


def open_loop(url: str, bodies: Sequence[bytes], *, rate: float, seconds: float, connections: int = 16,
              on_response: OnResponse | None = None, timeout_s: float = 30.0, drain_s: float = 5.0,
              during: Callable[[float], Any] | None = None) -> LoadResult:
    """`rate` requests per second for `seconds`, each due at a fixed time whatever the server does.
    `during(started)`, a coroutine function, runs alongside (e.g. a rollback in the middle of the run);
    the timetable then goes on until it has returned, however long that takes."""
    return _run(_open_loop(url, bodies, rate, seconds, connections, on_response, timeout_s, drain_s, during))
