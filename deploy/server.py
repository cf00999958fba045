"""The BEHAVIOR evaluator's policy server: a thin websocket loop over `Policy` objects.

Protocol (shared/BEHAVIOR.md, "The evaluator's policy protocol"), as the evaluator's client expects it:

- `GET /healthz` answers 200 (the server only listens once the model is loaded);
- every connection gets one msgpack map of metadata first, and its own `Policy` (chunk state, noise);
- a binary msgpack map is one observation; `{"reset": true}` starts a new episode and gets no reply;
- the reply is a binary msgpack map `{"action": float32 [23] ([B, 23] batched), "server_timing": {...}}`,
  plus `"action_chunk"` [K, 23] ([B, K, 23]) when the request carries `__action_chunk_size__` = K;
- a frame that cannot be acted on gets a text frame `error: ...` naming the key and what was expected,
  and the connection and the server go on. Frames above `max_message_bytes` are refused by the
  websocket layer (close code 1009, "message too big").

Requests are decoded and answered in one worker thread (one inference at a time, the event loop stays
free for health checks and pings). Nothing from a request reaches a shell, a path or pickle.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from deploy import wire
from deploy.adapter import ObservationError
from deploy.policy import ChunkModel, ExecutionConfig, Policy

logger = logging.getLogger(__name__)

RESET_KEY = "reset"
CHUNK_SIZE_KEY = "__action_chunk_size__"
DEFAULT_PORT = 8000
DEFAULT_MAX_MESSAGE_MB = 256  # an observation of 8 environments at 720/480 RGBA is ~35 MB
LATENCY_WINDOW = 1000  # steps kept for the latency percentiles


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: any free port (logged)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_MB * 2**20
    log_every: int = 500  # steps per connection between latency logs


@dataclass
class ConnectionStats:
    """Per connection: episodes, steps, and the last `LATENCY_WINDOW` step latencies (seconds)."""

    number: int
    episodes: int = 0
    steps: int = 0
    episode_steps: int = 0
    errors: int = 0
    total: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    model: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def percentiles(self) -> str:
        if not self.total:
            return "no steps"
        total = np.asarray(self.total) * 1e3
        model = np.asarray(self.model) * 1e3 if self.model else np.zeros(1)
        p50, p95, p99 = np.percentile(total, [50, 95, 99])
        return (
            f"latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms; model p50 "
            f"{np.percentile(model, 50):.1f} ms over the last {len(total)} steps"
        )


def _chunk_size(message: dict[str, Any]) -> int | None:
    if CHUNK_SIZE_KEY not in message:
        return None
    value = message.pop(CHUNK_SIZE_KEY)
    if (
        isinstance(value, np.generic | np.ndarray)
        and np.ndim(value) == 0
        and np.asarray(value).dtype.kind in "iu"
    ):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ObservationError(f"{CHUNK_SIZE_KEY}: expected an int K >= 1, got {value!r:.40}")
    return value


class PolicyServer:
    """Serves one `ChunkModel` to any number of evaluator connections."""

    def __init__(self, model: ChunkModel, execution: ExecutionConfig, config: ServeConfig) -> None:
        self.model = model
        self.execution = execution
        self.config = config
        probe = Policy(model, execution)  # fail now, not per connection, on a bad execution config
        self.metadata = {
            **model.spec.metadata(),
            "action_steps": probe.action_steps,
            "ensemble": execution.ensemble,
        }
        self._numbers = itertools.count(1)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="b1k-serve-infer")

    # -- the websocket side

    @staticmethod
    def _health(connection: ServerConnection, request) -> Any:
        if request.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        return None

    async def run(
        self, ready: Callable[[int], None] | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """Serve until `stop` is set (forever without one); `ready(port)` once listening."""
        async with serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._health,
            max_size=self.config.max_message_bytes,
            compression=None,
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            logger.info("serving on ws://%s:%d (health: http://%s:%d/healthz)", self.config.host, port,
                        self.config.host, port)  # fmt: skip
            if ready is not None:
                ready(port)
            await (stop.wait() if stop is not None else asyncio.Future())
        self._worker.shutdown(wait=True)

    async def _handle(self, connection: ServerConnection) -> None:
        stats = ConnectionStats(next(self._numbers))
        policy = Policy(self.model, self.execution)
        logger.info("connection %d from %s", stats.number, connection.remote_address)
        loop = asyncio.get_running_loop()
        try:
            await connection.send(wire.pack(self.metadata))
            async for frame in connection:
                reply = await loop.run_in_executor(self._worker, self._respond, policy, frame, stats)
                if reply is not None:
                    await connection.send(reply)
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code not in (1000, 1001):
                logger.info("connection %d: closed (%s)", stats.number, exc)
        finally:
            logger.info(
                "connection %d closed: %d episodes, %d steps, %d errors; %s",
                stats.number, stats.episodes, stats.steps, stats.errors, stats.percentiles(),
            )  # fmt: skip

    # -- one frame (in the worker thread)

    def _respond(self, policy: Policy, frame: bytes | str, stats: ConnectionStats) -> bytes | str | None:
        """The reply to one frame: msgpack bytes, an `error: ...` text, or None (a reset)."""
        started = time.perf_counter()
        try:
            if isinstance(frame, str):
                raise wire.WireError("expected a binary msgpack frame, got a text frame")
            message = wire.unpack(frame, max_array_bytes=self.config.max_message_bytes)
            if message.get(RESET_KEY) is True:
                self._reset(policy, stats)
                return None
            chunk_size = _chunk_size(message)
            step = policy.step(message, chunk_size=chunk_size)
        except (wire.WireError, ObservationError) as exc:
            stats.errors += 1
            logger.warning("connection %d: refused a frame: %s", stats.number, exc)
            return f"error: {exc}"
        except Exception as exc:  # a bug, not the client's: say so, keep serving
            stats.errors += 1
            logger.exception("connection %d: internal error", stats.number)
            return f"error: internal error in b1k-serve: {type(exc).__name__}: {exc}"
        reply: dict[str, Any] = {"action": step.action if step.batched else step.action[0]}
        if step.chunk is not None:
            reply["action_chunk"] = step.chunk if step.batched else step.chunk[0]
        model_seconds = step.prediction.model_seconds if step.prediction is not None else 0.0
        total = time.perf_counter() - started
        reply["server_timing"] = {
            "total_ms": total * 1e3,
            "model_ms": model_seconds * 1e3,
            "overhead_ms": (total - model_seconds) * 1e3,
        }
        self._count(stats, total, model_seconds if step.prediction is not None else None)
        return wire.pack(reply)

    def _reset(self, policy: Policy, stats: ConnectionStats) -> None:
        policy.reset()
        if stats.episode_steps:
            stats.episodes += 1
            logger.info("connection %d: episode %d ended after %d steps", stats.number, stats.episodes,
                        stats.episode_steps)  # fmt: skip
        stats.episode_steps = 0

    def _count(self, stats: ConnectionStats, total: float, model: float | None) -> None:
        stats.steps += 1
        stats.episode_steps += 1
        stats.total.append(total)
        if model is not None:
            stats.model.append(model)
        if self.config.log_every and stats.steps % self.config.log_every == 0:
            logger.info("connection %d: step %d; %s", stats.number, stats.steps, stats.percentiles())


class ServerThread:
    """A `PolicyServer` on a background thread (tests, benchmarks, notebooks): `with ServerThread(s) as t:`
    then connect to `ws://127.0.0.1:{t.port}`."""

    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        self.port: int | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="b1k-serve", daemon=True)
        self._error: BaseException | None = None

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.server.run(ready=self._on_ready, stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def _on_ready(self, port: int) -> None:
        self.port = port
        self._ready.set()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(timeout=60)
        if self._error is not None or self.port is None:
            raise RuntimeError(f"the server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)
