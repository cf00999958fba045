"""`b1k-serve`: serve a `b1k-train` checkpoint to the BEHAVIOR Challenge evaluator over its websocket
protocol (see `deploy.server`).

Start-up order: the options are checked and the port opened first (GET /healthz answers 503), then
torch, lerobot and the checkpoint load in a thread; nothing that can wait for the model comes before
it. A client that reconnects to a restarted server finds it listening within about a second, and
gets its metadata once the model is loaded.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from deploy.adapter import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_IMAGE_SIDE,
    DEFAULT_MAX_PIXELS,
    ObservationAdapter,
)
from deploy.batching import DEFAULT_MAX_ROWS, DEFAULT_MAX_WAIT_S, BatchingConfig
from deploy.checkpoint import DeploySpec, find_checkpoint, load_checkpoint
from deploy.execution import DEFAULT_ENSEMBLE_COEFF, ExecutionConfig
from deploy.server import (
    DEFAULT_MAX_MESSAGE_MB,
    DEFAULT_PING_TIMEOUT_S,
    DEFAULT_PORT,
    PolicyServer,
    ServeConfig,
)
from schemas.errors import OptionError
from shards.command import Exits, command

if TYPE_CHECKING:
    from deploy.policy import ChunkModel

MIN_PING_TIMEOUT_S = 600  # the evaluator's own patience per request
# "error: ..." and status 2 (a wrong checkpoint, options that do not fit it, a port taken).
EXITS = Exits(error=2)


class PortRange(click.ParamType):
    """`8000` or `8000-8063`: the ports one model is served on."""

    name = "PORT[-PORT]"

    def convert(self, value, param, ctx) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        first, _, last = str(value).partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            self.fail(f"{value!r}: expected a port (8000) or a range (8000-8063)", param, ctx)
        low, high = int(first), int(last or first)
        if not 0 <= low <= high <= 65535 or (low == 0 and high != 0) or high - low >= 1024:
            self.fail(f"{value!r}: ports 1..65535, at most 1024 of them (or 0: any free port)", param, ctx)
        return tuple(range(low, high + 1))


def _load_model(
    directory: Path, device: str, vlm_model: str | None, adapter: Callable[[DeploySpec], ObservationAdapter]
) -> ChunkModel:
    """The model, loaded in the server's load thread: torch and lerobot are imported here."""
    from deploy.policy import ChunkModel

    loaded = load_checkpoint(directory, device=device, vlm_model=vlm_model)
    return ChunkModel(loaded, adapter(loaded.spec))


async def _serve_until_signalled(server: PolicyServer, load: Callable[[], ChunkModel]) -> None:
    """Serve until SIGINT or SIGTERM (`docker stop`), then close connections with 1012 (their summaries
    are logged)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.run(load, stop=stop)


@command("b1k-serve", EXITS)
@click.option(
    "--checkpoint",
    required=True,
    metavar="DIR",
    help="A b1k-train checkpoint: <run>/checkpoints/<step>/pretrained_model, the step dir, or the run dir "
    "(its checkpoints/last).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. 127.0.0.1: only this machine (the evaluator runs here). 0.0.0.0: every "
    "interface, needed inside a container (publish the port) or when the evaluator runs elsewhere; "
    "the protocol has no authentication, so only on a trusted network.",
)
@click.option(
    "--port",
    type=PortRange(),
    default=str(DEFAULT_PORT),
    show_default=True,
    help="TCP port (the evaluator's default is 8000), or a range A-B of ports served by one model (the "
    "challenge's endpoint alternative asks for 64: 8000-8063); 0 = any free port, logged at start.",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="torch device: auto (cuda when available, else cpu), cpu, cuda, cuda:N.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the flow-matching noise, re-applied at every reset: the same observations after a reset "
    "give the same actions.",
)
@click.option(
    "--action-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Receding horizon: actions executed from each predicted chunk before predicting again "
    "[default: the checkpoint's n_action_steps].",
)
@click.option(
    "--ensemble/--no-ensemble",
    default=False,
    show_default=True,
    help="Temporal ensembling (ACT): predict a chunk every step and send the weighted mean of every "
    "chunk's prediction for this step (weights exp(-coeff * i), i = 0 the oldest).",
)
@click.option(
    "--ensemble-coeff",
    type=float,
    default=DEFAULT_ENSEMBLE_COEFF,
    show_default=True,
    help="With --ensemble: coeff of the weights; > 0 favours older predictions, 0 = plain mean, < 0 newer.",
)
@click.option(
    "--prompt",
    default=None,
    help="Task string to act on for every task_id, instead of the checkpoint's task table (needed for "
    "checkpoints that record none).",
)
@click.option(
    "--vlm-model",
    default=None,
    metavar="DIR",
    help="Local copy of the checkpoint's VLM backbone (config and tokenizer; weights come from the "
    "checkpoint), for machines that cannot reach the Hugging Face Hub.",
)
@click.option(
    "--max-message-mb",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_MESSAGE_MB,
    show_default=True,
    help="Largest websocket frame accepted, in MiB (larger ones close the connection with code 1009); "
    "16 environments at 720/480 RGBA with depth and segmentation are ~190 MB.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BATCH,
    show_default=True,
    help="Most environments in one request; a larger batch gets an error frame before anything is "
    "decoded further.",
)
@click.option(
    "--max-request-mpx",
    type=click.FloatRange(min=0.001),
    default=DEFAULT_MAX_PIXELS / 1e6,
    show_default=True,
    help="Most camera pixels in one request, in millions (all cameras, all environments; one "
    "environment at 720/480 is 0.98); more gets an error frame before any image is resized.",
)
@click.option(
    "--max-model-batch",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_ROWS,
    show_default=True,
    help="Most environments in one model call: requests waiting on several connections (one per "
    "environment, or several evaluators) run together up to this many; >= --max-batch.",
)
@click.option(
    "--batch-wait-ms",
    type=click.FloatRange(min=0),
    default=DEFAULT_MAX_WAIT_S * 1e3,
    show_default=True,
    help="How long a model call waits for requests that arrived and are still being decoded, so that "
    "clients in lockstep share a call.",
)
@click.option(
    "--ping-timeout",
    type=click.IntRange(min=MIN_PING_TIMEOUT_S),
    default=int(DEFAULT_PING_TIMEOUT_S),
    show_default=True,
    help="Seconds a connection may leave a ping unanswered before it is dropped (the simulator blocks "
    "its client for minutes while it loads a scene; the evaluator waits 600 s per request).",
)
@click.option(
    "--max-image-side",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_IMAGE_SIDE,
    show_default=True,
    help="Largest camera image side accepted, in pixels (the evaluator renders at most 720).",
)
@click.option(
    "--log-every",
    type=click.IntRange(min=0),
    default=500,
    show_default=True,
    help="Log latency percentiles every N steps of a connection (0 = only when it closes).",
)
def main(
    checkpoint: str,
    host: str,
    port: tuple[int, ...],
    device: str,
    seed: int,
    action_steps: int | None,
    ensemble: bool,
    ensemble_coeff: float,
    prompt: str | None,
    vlm_model: str | None,
    max_message_mb: int,
    max_batch: int,
    max_request_mpx: float,
    max_model_batch: int,
    batch_wait_ms: float,
    ping_timeout: int,
    max_image_side: int,
    log_every: int,
) -> None:
    """Serve a b1k-train checkpoint to the BEHAVIOR Challenge evaluator (its websocket policy protocol).

    Observations (three RGBA cameras at any size, the 256- or 61-dim proprio, task_id) are turned into
    exactly what the checkpoint was trained on; each connection gets its own action-chunk state; replies
    are 23-dim actions in dataset units. GET /healthz answers 503 while the model loads, 200 once it is
    loaded. Requests waiting on several connections run as one batched model call.
    """
    logging.getLogger("websockets").setLevel(logging.WARNING)  # our own lines say what each connection did
    if max_batch > max_model_batch:
        raise OptionError(f"--max-batch {max_batch} is above --max-model-batch {max_model_batch}")
    directory = find_checkpoint(checkpoint)  # a wrong path fails before the port is opened
    execution = ExecutionConfig(
        action_steps=action_steps, ensemble=ensemble, ensemble_coeff=ensemble_coeff, seed=seed
    )
    config = ServeConfig(
        host=host,
        ports=port,
        max_message_bytes=max_message_mb * 2**20,
        ping_timeout_s=float(ping_timeout),
        batching=BatchingConfig(max_rows=max_model_batch, max_wait_s=batch_wait_ms / 1e3),
        log_every=log_every,
    )
    adapter = functools.partial(
        ObservationAdapter,
        prompt=prompt,
        max_image_side=max_image_side,
        max_batch=max_batch,
        max_pixels=int(max_request_mpx * 1e6),
    )
    load = functools.partial(_load_model, directory, device, vlm_model, adapter)
    asyncio.run(_serve_until_signalled(PolicyServer(execution, config), load))
    # a named logger: under `python -m deploy.cli` __name__ is "__main__", which logs nothing at INFO
    logging.getLogger("deploy.cli").info("stopped")


if __name__ == "__main__":
    main()
