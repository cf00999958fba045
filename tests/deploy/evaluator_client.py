"""The BEHAVIOR evaluator's policy client, as its own client code does it (openpi's
`WebsocketClientPolicy` with BEHAVIOR's health poll and reset; shared/BEHAVIOR.md, "The evaluator's
policy protocol"), plus observations shaped like the ones the evaluator sends.

- poll `GET http://HOST:PORT/healthz` until a 2xx answer, then `websockets.sync.client.connect(uri,
  compression=None, max_size=None)` and block on the first message: the server's metadata map;
- `infer(obs)`: pack with msgpack_numpy, send, receive; a text frame raises "Error in inference server";
- `reset()`: send `{"reset": True}` and read nothing back.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import msgpack
import numpy as np
from websockets.sync.client import connect

from deploy.adapter import CAMERA_KEYS, PROPRIO_KEY, TASK_KEY

CAM_REL_POSES_KEY = "robot_r1::cam_rel_poses"


# openpi's msgpack_numpy, as the evaluator's client imports it
def pack_array(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"Unsupported dtype: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def unpack_array(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=pack_array)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=unpack_array)


class EvaluatorClient:
    """The evaluator's side of one connection."""

    def __init__(self, host: str, port: int, health_timeout: float = 60.0, poll: float = 0.2) -> None:
        self.uri = f"ws://{host}:{port}"
        self._health = f"http://{host}:{port}/healthz"
        self._wait_healthy(health_timeout, poll)
        self.ws = connect(self.uri, compression=None, max_size=None, open_timeout=30)
        self.metadata = unpackb(self.ws.recv(timeout=30))

    def _wait_healthy(self, timeout: float, poll: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self._health, timeout=5) as response:
                    if 200 <= response.status < 300:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self._health} did not answer 2xx within {timeout} s")
            time.sleep(poll)  # the evaluator polls every 5 s

    def infer(self, obs: dict) -> dict:
        self.ws.send(packb(obs))
        response = self.ws.recv(timeout=120)
        if isinstance(response, str):
            raise RuntimeError(f"Error in inference server:\n{response}")
        return unpackb(response)

    def reset(self) -> None:
        self.ws.send(packb({"reset": True}))

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> EvaluatorClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def observation(
    seed: int,
    *,
    proprio_dim: int = 256,
    sizes: tuple[int, int] = (224, 224),
    task_id: int = 0,
    batch: int | None = None,
) -> dict[str, Any]:
    """An evaluator observation: RGBA uint8 cameras (head at sizes[0], wrists at sizes[1]), proprio
    float64, cam_rel_poses, task_id int64; with `batch`, a leading batch dimension on every array."""
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    obs: dict[str, Any] = {}
    for name, key in CAMERA_KEYS.items():
        side = sizes[0] if name == "head" else sizes[1]
        obs[key] = rng.integers(0, 256, (*lead, side, side, 4), dtype=np.uint8)
    obs[PROPRIO_KEY] = rng.normal(size=(*lead, proprio_dim))
    obs[CAM_REL_POSES_KEY] = rng.normal(size=(*lead, 21))
    obs[TASK_KEY] = np.int64(task_id) if batch is None else np.full(batch, task_id, np.int64)
    return obs
