"""The BEHAVIOR evaluator's policy server: a thin websocket loop over `Policy` objects, one model.

Protocol (shared/BEHAVIOR.md, "The evaluator's policy protocol"), as the evaluator's client expects it:

- the server listens at once; `GET /healthz` answers 503 while the model loads, then 200 (the
  evaluator polls it every 5 s); a connection opened while loading gets its metadata once loaded;
- every connection gets one msgpack map of metadata first, and its own `Policy` (chunk state, noise);
- a binary msgpack map is one observation; `{"reset": true}` starts a new episode and gets no reply;
- the reply is a binary msgpack map `{"action": float32 [23] ([B, 23] batched), "server_timing": {...}}`,
  plus `"action_chunk"` [K, 23] ([B, K, 23]) when the request carries `__action_chunk_size__` = K
  and the checkpoint's chunk holds K actions (else no `action_chunk`: the evaluator then asks once per
  step);
- a frame that cannot be acted on gets a text frame `error: ...` naming the key and what was expected
  (cut to a few hundred characters), and the connection and the server go on. Frames above
  `max_message_bytes` are refused by the websocket layer (close code 1009, "message too big");
- silent clients are kept: the simulator blocks its process for minutes (scene loads) and the
  evaluator waits 600 s per request, so a connection is dropped only after `ping_timeout_s`;
- on shutdown every connection is closed with 1012 (service restart), which lets a client reconnect.

Threads: the event loop (websockets, health checks, pings) never decodes or runs the model; frames
are decoded and adapted in `prepare_threads` worker threads, and one model thread (`BatchScheduler`)
runs the requests of all connections that are waiting as one batched call. Nothing from a request
reaches a shell, a path or pickle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from deploy import wire
from deploy.adapter import ObservationError
from deploy.batching import BatchingConfig, BatchScheduler, CallInfo
from deploy.execution import ExecutionConfig

if TYPE_CHECKING:  # torch comes with the model, after the server listens
    from deploy.policy import ChunkModel, PendingStep, Policy, Prediction

logger = logging.getLogger(__name__)

RESET_KEY = "reset"
CHUNK_SIZE_KEY = "__action_chunk_size__"
DEFAULT_PORT = 8000
DEFAULT_MAX_MESSAGE_MB = 256  # 16 environments at 720/480 RGBA with depth and segmentation: ~190 MB
DEFAULT_PING_INTERVAL_S = 30.0
# Twice the evaluator's 600 s per request; its client never answers late on purpose, but the simulator
# blocks its process for minutes (scene loads: 6-7 minutes), and websockets' default (20 s) dropped it.
DEFAULT_PING_TIMEOUT_S = 1200.0
DEFAULT_MAX_QUEUE = 1  # frames read ahead per connection (websockets' default 16 let 3 clients hold 3 GB)
SHUTDOWN_CODE = 1012  # service restart: a client with reconnects on reconnects (1001 makes it give up)
LATENCY_WINDOW = 1000  # steps kept for the latency percentiles


class ListenError(OSError):
    """A port the server cannot listen on."""


Reply = bytes | str | None  # msgpack, an `error: ...` text, or nothing (a reset)


def _default_prepare_threads() -> int:
    return max(2, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    ports: tuple[int, ...] = (DEFAULT_PORT,)  # one model on each; 0: any free port (logged)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_MB * 2**20
    ping_interval_s: float = DEFAULT_PING_INTERVAL_S
    ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S
    max_queue: int = DEFAULT_MAX_QUEUE
    close_timeout_s: float = 2.0  # for a client's close reply at shutdown (a paused one sends none)
    prepare_threads: int = field(default_factory=_default_prepare_threads)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
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


@dataclass
class _Model:
    """What serving needs once the model is loaded."""

    model: ChunkModel
    metadata: dict[str, Any]
    scheduler: BatchScheduler
    prepare_pool: ThreadPoolExecutor


class PolicyServer:
    """Serves one `ChunkModel` (loaded by `run`) to any number of evaluator connections, on one port or
    several."""

    def __init__(self, execution: ExecutionConfig, config: ServeConfig) -> None:
        self.execution = execution
        self.config = config
        self.ports: list[int] = []
        self._numbers = itertools.count(1)
        self._ready: _Model | None = None
        self._loaded: asyncio.Event | None = None

    @property
    def scheduler(self) -> BatchScheduler:
        if self._ready is None:
            raise RuntimeError("the model is not loaded yet")
        return self._ready.scheduler

    @property
    def metadata(self) -> dict[str, Any]:
        if self._ready is None:
            raise RuntimeError("the model is not loaded yet")
        return self._ready.metadata

    # -- the websocket side

    def _health(self, connection: ServerConnection, request) -> Any:
        if request.path != "/healthz":
            return None
        if self._ready is None:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "loading the model\n")
        return connection.respond(HTTPStatus.OK, "ok\n")

    def _listen(self, port: int) -> Server:
        return serve(
            self._handle,
            self.config.host,
            port,
            process_request=self._health,
            max_size=self.config.max_message_bytes,
            max_queue=self.config.max_queue,
            compression=None,
            ping_interval=self.config.ping_interval_s,
            ping_timeout=self.config.ping_timeout_s,
            close_timeout=self.config.close_timeout_s,
        )

    @contextlib.asynccontextmanager
    async def _listening(self, port: int):
        try:
            server = await self._listen(port)
        except OSError as exc:  # the port is taken, the address is not ours
            raise ListenError(f"cannot listen on {self.config.host}:{port}: {exc.strerror or exc}") from exc
        async with server:
            yield server

    async def run(
        self,
        load: Callable[[], ChunkModel],
        ready: Callable[[list[int]], None] | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Listen, load the model (`load()`, in a thread), serve until `stop` is set (forever without
        one); `ready(ports)` once the model is loaded. Connections are closed with 1012 at the end."""
        started = time.perf_counter()
        stop = stop or asyncio.Event()
        self._loaded = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            servers = [await stack.enter_async_context(self._listening(port)) for port in self.config.ports]
            self.ports = [next(iter(s.sockets)).getsockname()[1] for s in servers]
            for port in self.ports:
                logger.info("listening on ws://%s:%d (GET /healthz: 503 while the model loads, then 200)",
                            self.config.host, port)  # fmt: skip
            try:
                if await self._load(load, stop):
                    logger.info("ready after %.1f s: one model serves %d port(s)", time.perf_counter() - started,
                                len(self.ports))  # fmt: skip
                    if ready is not None:
                        ready(self.ports)
                    await stop.wait()
            finally:
                await _close(servers)
                self._shutdown()

    async def _load(self, load: Callable[[], ChunkModel], stop: asyncio.Event) -> bool:
        """The model, loaded in a daemon thread (a stop during the load does not wait for it); False if
        stopped first."""
        loading: Future = Future()
        threading.Thread(target=_run_into, args=(load, loading), name="b1k-serve-load", daemon=True).start()
        stopped = asyncio.create_task(stop.wait())
        loaded = asyncio.wrap_future(loading)
        await asyncio.wait([loaded, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not loaded.done():
            return False
        self._ready = self._start(loaded.result())
        assert self._loaded is not None
        self._loaded.set()
        return True

    def _start(self, model: ChunkModel) -> _Model:
        from deploy.policy import Policy, predict_together  # imported with torch by the load

        if model.adapter.max_batch > self.config.batching.max_rows:
            raise ValueError(
                f"--max-batch {model.adapter.max_batch} is above --max-model-batch {self.config.batching.max_rows}"
            )
        probe = Policy(model, self.execution)  # fail now, not per connection, on a bad execution config
        metadata = {
            **model.spec.metadata(),
            "action_steps": probe.action_steps,
            "ensemble": self.execution.ensemble,
        }
        scheduler = BatchScheduler(
            lambda steps: predict_together(model, steps),
            rows=lambda step: step.rows,
            config=self.config.batching,
        )
        pool = ThreadPoolExecutor(self.config.prepare_threads, thread_name_prefix="b1k-serve-prepare")
        return _Model(model, metadata, scheduler, pool)

    def _shutdown(self) -> None:
        if self._ready is not None:
            self._ready.scheduler.close()
            self._ready.prepare_pool.shutdown(wait=True)

    async def _handle(self, connection: ServerConnection) -> None:
        stats = ConnectionStats(next(self._numbers))
        logger.info("connection %d from %s", stats.number, connection.remote_address)
        try:
            ready = await self._wait_for_model(connection)
            if ready is None:
                return
            from deploy.policy import Policy

            policy = Policy(ready.model, self.execution)
            await connection.send(wire.pack(ready.metadata))
            async for frame in connection:
                reply = await self._answer(policy, frame, stats)
                if reply is not None:
                    await connection.send(reply)
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code not in (1000, 1001):
                logger.info("connection %d: closed (%s)", stats.number, wire.clip(str(exc)))
        finally:
            logger.info(
                "connection %d closed: %d episodes, %d steps, %d errors; %s",
                stats.number, stats.episodes, stats.steps, stats.errors, stats.percentiles(),
            )  # fmt: skip

    async def _wait_for_model(self, connection: ServerConnection) -> _Model | None:
        """The loaded model; a client that connected while it loads waits for it (None: the client or
        the server closed first)."""
        if self._ready is None:
            assert self._loaded is not None
            waits = [asyncio.create_task(self._loaded.wait()), asyncio.create_task(connection.wait_closed())]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
        return self._ready

    # -- one frame: prepared in a worker thread, run in the model thread with others, answered here

    async def _answer(self, policy: Policy, frame: bytes | str, stats: ConnectionStats) -> Reply:
        assert self._ready is not None
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        with self._ready.scheduler.preparing() as submit:
            prepared = await loop.run_in_executor(
                self._ready.prepare_pool, self._prepare, policy, frame, stats
            )
            if not _is_step(prepared):
                return prepared
            future = submit(prepared) if prepared.needs_model else None
        prediction, call = None, None
        if future is not None:
            try:
                prediction, call = await asyncio.wrap_future(future)
            except Exception as exc:
                return self._internal_error(stats, exc)
        return self._reply(policy, prepared, prediction, call, stats, started)

    def _prepare(self, policy: Policy, frame: bytes | str, stats: ConnectionStats) -> PendingStep | Reply:
        """The frame decoded and adapted into a step (its noise drawn), or the reply it gets at once."""
        try:
            if isinstance(frame, str):
                raise wire.WireError("expected a binary msgpack frame, got a text frame")
            message = wire.unpack(frame, max_array_bytes=self.config.max_message_bytes)
            if message.get(RESET_KEY) is True:
                self._reset(policy, stats)
                return None
            return policy.begin(message, chunk_size=_chunk_size(message))
        except (wire.WireError, ObservationError) as exc:
            stats.errors += 1
            text = wire.clip(str(exc))
            logger.warning("connection %d: refused a frame: %s", stats.number, text)
            return f"error: {text}"
        except Exception as exc:  # a bug, not the client's: say so, keep serving
            return self._internal_error(stats, exc)

    def _reply(
        self,
        policy: Policy,
        pending: PendingStep,
        prediction: Prediction | None,
        call: CallInfo | None,
        stats: ConnectionStats,
        started: float,
    ) -> Reply:
        try:
            step = policy.finish(pending, prediction)
        except Exception as exc:
            return self._internal_error(stats, exc)
        reply: dict[str, Any] = {"action": step.action if step.batched else step.action[0]}
        if step.chunk is not None:
            reply["action_chunk"] = step.chunk if step.batched else step.chunk[0]
        model_seconds = prediction.model_seconds if prediction is not None else 0.0
        total = time.perf_counter() - started
        reply["server_timing"] = {
            "total_ms": total * 1e3,
            "model_ms": model_seconds * 1e3,
            "overhead_ms": (total - model_seconds) * 1e3,
            "batch_rows": call.rows if call is not None else 0,  # environments in the model call
            "waited_calls": call.waited_calls if call is not None else 0,  # calls that went first
        }
        self._count(stats, total, model_seconds if prediction is not None else None)
        return wire.pack(reply)

    @staticmethod
    def _internal_error(stats: ConnectionStats, exc: Exception) -> str:
        stats.errors += 1
        logger.exception("connection %d: internal error", stats.number)
        return wire.clip(f"error: internal error in b1k-serve: {type(exc).__name__}: {exc}")

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


def _is_step(prepared: object) -> bool:
    return not isinstance(prepared, bytes | str | None)


def _run_into(load: Callable[[], Any], future: Future) -> None:
    try:
        future.set_result(load())
    except BaseException as exc:
        future.set_exception(exc)


async def _close(servers: list[Server]) -> None:
    """Close every connection with 1012 (service restart) and wait for the handlers."""
    for server in servers:
        server.close(code=SHUTDOWN_CODE, reason="service restart")
    await asyncio.gather(*(server.wait_closed() for server in servers))


class ServerThread:
    """A `PolicyServer` on a background thread (tests, benchmarks, notebooks): `with ServerThread(s, load)
    as t:` then connect to `ws://127.0.0.1:{t.port}` (entered once the model is loaded)."""

    def __init__(self, server: PolicyServer, load: Callable[[], ChunkModel]) -> None:
        self.server = server
        self.load = load
        self.ports: list[int] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="b1k-serve", daemon=True)
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.server.run(self.load, ready=self._on_ready, stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def _on_ready(self, ports: list[int]) -> None:
        self.ports = ports
        self._ready.set()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(timeout=120)
        if self._error is not None or not self.ports:
            raise RuntimeError(f"the server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=60)
