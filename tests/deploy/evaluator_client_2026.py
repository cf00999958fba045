"""The 2026 BEHAVIOR evaluator's policy client (`omnigibson.eval`, branch `2026/eval`, v3.9.x), written
from shared/BEHAVIOR.md ("The evaluator's policy protocol"); `evaluator_client.py` keeps covering 2025.

- Every request is batched: each environment's observation gets a leading dimension and they are
  stacked (`stack_environments`): images [B, H, W, 4], proprio [B, 61], `task_id` int64 [B, 1] (each
  environment's is a [1] array). In the one-connection-per-environment mode each request is B = 1.
- Chunk replay (`ChunkReplay`): `__action_chunk_size__` K asks for `action_chunk` [B, K, 23], which
  the client replays step by step before it asks again; a reply without `action_chunk` makes it fall
  back to one request per step.
- Health: poll `GET /healthz` (every 5 s) until 2xx, then connect and block on the metadata map.
- Reconnects (off by default, as the evaluator builds its policy): on a dropped connection, 3 tries
  over ~11 s in total (`RECONNECT_WAITS_S`), then the request is sent again.
- Minutes of silence: the client disables its own ping timeout, and while the simulator blocks its
  process (scene loads: 6-7 minutes) nothing answers the server's pings. `RawConnection` reproduces
  that: a websocket over a plain socket and websockets' sans-I/O protocol on the caller's thread,
  which reads the socket (so answers pings) only while it waits for a reply.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any

import numpy as np
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from deploy.adapter import TASK_KEY
from tests.deploy.evaluator_client import packb, unpackb

CHUNK_SIZE_KEY = "__action_chunk_size__"
RECONNECT_WAITS_S = (1.0, 3.0, 7.0)  # 3 tries, ~11 s in total
HEALTH_POLL_S = 5.0
READ_BYTES = 1 << 20


class RawConnection:
    """One websocket client connection that does nothing between calls: no background thread, so a
    paused caller answers no pings, like a client process the simulator blocks."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.protocol = ClientProtocol(parse_uri(f"ws://{host}:{port}"), max_size=None)
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        self._messages: deque[bytes | str] = deque()
        deadline = time.monotonic() + timeout
        while self.protocol.state is State.CONNECTING:
            self._read(deadline)
        if self.protocol.handshake_exc is not None:
            raise self.protocol.handshake_exc

    def _flush(self) -> None:
        try:
            for data in self.protocol.data_to_send():
                if data:
                    self.sock.sendall(data)
                else:  # the protocol's end of stream: half-close
                    self.sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server is gone; what it sent last (its close frame) is still read
            if self.protocol.state is State.OPEN:
                raise

    def _read(self, deadline: float) -> None:
        """Read what the server sent (answering its pings and close), or raise at `deadline`."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply from the server in time")
        self.sock.settimeout(left)
        data = self.sock.recv(READ_BYTES)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        self._flush()
        self._take_messages()

    def _take_messages(self) -> None:
        for event in self.protocol.events_received():
            if getattr(event, "opcode", None) is Opcode.BINARY:
                self._messages.append(bytes(event.data))
            elif getattr(event, "opcode", None) is Opcode.TEXT:
                self._messages.append(bytes(event.data).decode())

    def _drain(self) -> None:
        """Take in what arrived while the caller was busy (pings, a close frame), without waiting."""
        self.sock.setblocking(False)
        try:
            while self.protocol.state is not State.CLOSED:
                data = self.sock.recv(READ_BYTES)
                self.protocol.receive_data(data) if data else self.protocol.receive_eof()
                self._flush()
                self._take_messages()
                if not data:
                    break
        except (BlockingIOError, ConnectionResetError):
            pass
        finally:
            self.sock.setblocking(True)

    def send(self, data: bytes) -> None:
        self._drain()
        if self.protocol.state is not State.OPEN:
            raise self.protocol.close_exc
        self.protocol.send_binary(data)
        self._flush()

    def recv(self, timeout: float) -> bytes | str:
        deadline = time.monotonic() + timeout
        while not self._messages:
            if self.protocol.state is State.CLOSED:
                raise self.protocol.close_exc
            self._read(deadline)
        return self._messages.popleft()

    def close(self) -> None:
        if self.protocol.state is State.OPEN:
            self.protocol.send_close()
            self._flush()
        self.sock.close()


def wait_healthy(host: str, port: int, timeout: float, poll: float = HEALTH_POLL_S) -> None:
    """Poll `GET /healthz` until a 2xx answer (503 while the server loads its model)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as response:
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"http://{host}:{port}/healthz did not answer 2xx within {timeout} s")
        time.sleep(poll)


def stack_environments(observations: list[dict[str, Any]]) -> dict[str, Any]:
    """The 2026 evaluator's batched request: each environment's arrays stacked on a new leading
    dimension, its task id a [1] array (so `task_id` is [B, 1])."""
    stacked: dict[str, Any] = {}
    for key in observations[0]:
        if key == TASK_KEY:
            stacked[key] = np.stack([np.array([int(o[key])], np.int64) for o in observations])
        else:
            stacked[key] = np.stack([np.asarray(o[key]) for o in observations])
    return stacked


class Evaluator2026Client:
    """One connection of the 2026 evaluator: `infer(request)` -> reply map, `reset()`, reconnects."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        reconnect: bool = False,
        health_timeout: float = 120.0,
        health_poll: float = HEALTH_POLL_S,
        reply_timeout: float = 600.0,  # the evaluator's patience per request
    ) -> None:
        self.host, self.port = host, port
        self.reconnect = reconnect
        self.reply_timeout = reply_timeout
        self.reconnects = 0
        self.close_codes: list[int | None] = []  # of the connections that dropped
        wait_healthy(host, port, health_timeout, health_poll)
        self._connect()

    def _connect(self) -> None:
        self.connection = RawConnection(self.host, self.port)
        metadata = self.connection.recv(self.reply_timeout)  # blocks until the server has its model
        if isinstance(metadata, str):
            raise RuntimeError(f"Error in inference server:\n{metadata}")
        self.metadata = unpackb(metadata)

    def infer(self, request: dict[str, Any]) -> dict[str, Any]:
        frame = packb(request)
        for wait in (None, *RECONNECT_WAITS_S):
            if wait is not None:
                time.sleep(wait)
                if not self._reconnected():
                    continue
            try:
                self.connection.send(frame)
                return self._reply()
            except ConnectionClosed as exc:
                self.close_codes.append(exc.rcvd.code if exc.rcvd is not None else None)
                if not self.reconnect:
                    raise
            except OSError:
                if not self.reconnect:
                    raise
        raise ConnectionError(
            f"ws://{self.host}:{self.port}: no connection after {len(RECONNECT_WAITS_S)} tries"
        )

    def _reconnected(self) -> bool:
        self.connection.sock.close()
        try:
            self._connect()
        except (OSError, ConnectionClosed):
            return False
        self.reconnects += 1
        return True

    def _reply(self) -> dict[str, Any]:
        reply = self.connection.recv(self.reply_timeout)
        if isinstance(reply, str):
            raise RuntimeError(f"Error in inference server:\n{reply}")
        return unpackb(reply)

    def reset(self) -> None:
        self.connection.send(packb({"reset": True}))

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Evaluator2026Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ChunkReplay:
    """The evaluator's chunk replay over one client: ask for K actions, replay them one per step, ask
    again; without `action_chunk` in the reply, one request per step. `requests` counts them."""

    def __init__(self, client: Evaluator2026Client, chunk_size: int) -> None:
        self.client = client
        self.chunk_size = chunk_size
        self.requests = 0
        self.replies: list[dict[str, Any]] = []
        self._chunk: np.ndarray | None = None  # [B, K, 23] being replayed
        self._next = 0

    def act(self, observations: list[dict[str, Any]]) -> np.ndarray:
        """The actions [B, 23] of this step for B environments."""
        if self._chunk is not None and self._next < self._chunk.shape[1]:
            self._next += 1
            return self._chunk[:, self._next - 1]
        reply = self.client.infer({**stack_environments(observations), CHUNK_SIZE_KEY: self.chunk_size})
        self.requests += 1
        self.replies.append(reply)
        self._chunk = reply.get("action_chunk")  # None: the fallback, a request every step
        self._next = 1
        return reply["action"]

    def reset(self) -> None:
        self._chunk = None
        self.client.reset()
