"""The evaluated frames replayed through a checkpoint's model, open loop chunk by chunk (`open_loop`)
and executed frame by frame through a serving `Policy` (`executed`), and through the "repeat the last
recorded action" baseline (`evaluate_baseline`); each adds its errors to a `Tally`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from deploy.eval.config import EvalConfig
from deploy.eval.frames import EvalFrames
from deploy.eval.inputs import frame_noise, policy_inputs
from deploy.eval.tally import Tally, breakdown, executed_row, tally_actions, tally_chunks
from deploy.policy import ChunkModel, ExecutionConfig, Policy

BASELINE_LABEL = "baseline: repeat last action"


def _batches(indices: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(indices), size):
        yield indices[start : start + size]


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True, leave=False)


def open_loop(
    model: ChunkModel, data: EvalFrames, members: dict[str, str], config: EvalConfig, tally: Tally, label: str
) -> None:
    chunk = model.spec.chunk_size
    with _bar(len(data), f"{label}: chunks", config.progress) as bar:
        for index in _batches(range(len(data)), config.batch_size):
            frames = [data.frames[i] for i in index]
            inputs = policy_inputs(data, index, model.spec, members)
            predicted = model.predict(inputs, frame_noise(model, config.seed, frames)).actions[:, :chunk]
            recorded, valid = data.recorded(index, chunk)
            tally_chunks(tally, predicted - recorded, valid, frames, config.bins)
            bar.update(len(index))


def executed(
    model: ChunkModel, data: EvalFrames, members: dict[str, str], config: EvalConfig, tally: Tally, label: str
) -> dict:
    """Replay the runs of consecutive frames through a `Policy` (a stream per run, `batch_size` runs in
    lock-step; a run that ends before the others of its batch repeats its last frame, unscored); returns
    the execution mode."""
    policy = Policy(model, dataclasses.replace(config.execution, seed=config.seed))
    runs = sorted(data.windows, key=lambda r: (-len(r), r.start))  # similar lengths share a batch
    with _bar(len(data), f"{label}: executed", config.progress) as bar:
        for group in _batches(runs, config.batch_size):
            policy.reset()
            for t in range(len(group[0])):
                index = [run[min(t, len(run) - 1)] for run in group]
                action = policy.step(policy_inputs(data, index, model.spec, members)).action
                live = [b for b, run in enumerate(group) if t < len(run)]
                recorded, _ = data.recorded([index[b] for b in live], 1)
                tally_actions(tally, action[live] - recorded[:, 0], "executed")
                bar.update(len(live))
    return execution_mode(config.execution, policy.action_steps)


def execution_mode(execution: ExecutionConfig, action_steps: int) -> dict:
    if execution.ensemble:
        return {"mode": "ensemble", "ensemble_coeff": execution.ensemble_coeff, "action_steps": 1}
    return {"mode": "receding", "action_steps": action_steps}


def evaluate_baseline(data: EvalFrames, chunk: int, bins: int) -> dict:
    """ "Repeat the last recorded action": for frame t, the action recorded at the episode's previous
    observation, for every step of a `chunk`-step chunk (and sent at frame t when executed)."""
    tally = Tally()
    for index in _batches(range(len(data)), 256):
        recorded, valid = data.recorded(index, chunk)
        held = data.previous_action[list(index)][:, None, :]
        tally_chunks(tally, held - recorded, valid, [data.frames[i] for i in index], bins)
        tally_actions(tally, held[:, 0] - recorded[:, 0], "executed")
    return {
        "label": BASELINE_LABEL,
        "chunk_size": chunk,
        **breakdown(tally, bins, chunk),
        "executed": executed_row(tally, "executed", mode="hold"),
    }
