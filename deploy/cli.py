"""`b1k-serve`: serve a `b1k-train` checkpoint to the BEHAVIOR Challenge evaluator over its websocket
protocol (see `deploy.server`)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import click

from deploy.adapter import DEFAULT_MAX_IMAGE_SIDE, ObservationAdapter, ObservationError
from deploy.checkpoint import CheckpointError, load_checkpoint
from deploy.policy import DEFAULT_ENSEMBLE_COEFF, ChunkModel, ExecutionConfig
from deploy.server import DEFAULT_MAX_MESSAGE_MB, DEFAULT_PORT, PolicyServer, ServeConfig


async def _serve_until_signalled(server: PolicyServer) -> None:
    """Serve until SIGINT or SIGTERM (`docker stop`), then close connections (their summaries are logged)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.run(stop=stop)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="TCP port (the evaluator's default is 8000); 0 = any free port, logged at start.",
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
    help="Largest websocket frame accepted, in MiB (larger ones close the connection with code 1009).",
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
@click.option("--debug", is_flag=True, help="On an error, show the Python traceback too (for bug reports).")
def main(
    checkpoint: str,
    host: str,
    port: int,
    device: str,
    seed: int,
    action_steps: int | None,
    ensemble: bool,
    ensemble_coeff: float,
    prompt: str | None,
    vlm_model: str | None,
    max_message_mb: int,
    max_image_side: int,
    log_every: int,
    debug: bool,
) -> None:
    """Serve a b1k-train checkpoint to the BEHAVIOR Challenge evaluator (its websocket policy protocol).

    Observations (three RGBA cameras at any size, the 256- or 61-dim proprio, task_id) are turned into
    exactly what the checkpoint was trained on; each connection gets its own action-chunk state; replies
    are 23-dim actions in dataset units. GET /healthz answers 200 once the model is loaded.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s b1k-serve %(message)s", stream=sys.stderr)
    logging.getLogger("websockets").setLevel(logging.WARNING)  # our own lines say what each connection did
    try:
        loaded = load_checkpoint(checkpoint, device=device, vlm_model=vlm_model)
        adapter = ObservationAdapter(loaded.spec, prompt=prompt, max_image_side=max_image_side)
        execution = ExecutionConfig(
            action_steps=action_steps, ensemble=ensemble, ensemble_coeff=ensemble_coeff, seed=seed
        )
        server = PolicyServer(
            ChunkModel(loaded, adapter),
            execution,
            ServeConfig(host=host, port=port, max_message_bytes=max_message_mb * 2**20, log_every=log_every),
        )
    except (CheckpointError, ObservationError, ValueError) as exc:
        if debug:
            raise
        _fail(str(exc))
        return
    try:
        asyncio.run(_serve_until_signalled(server))
        logging.getLogger(__name__).info("stopped")
    except OSError as exc:  # the port is taken, the address is not ours
        if debug:
            raise
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
