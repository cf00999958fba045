"""The demo's last step, run in a fresh process (`python -m demo.run --select-action`): the trained
checkpoint loaded with lerobot's own loaders only, and `select_action` on a held-out (val) frame."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click


def select_action_on_val_frame(checkpoint: Path, shards: Path) -> dict:
    """Load `checkpoint` with lerobot's own loaders and run `select_action` on a held-out frame.

    Only lerobot loads the model and its processors (nothing from `train/`); the frame is read from
    the shard set's `val` split with `shards/` (the held-out episodes the policy never trained on).
    """
    import numpy as np
    import torch
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from schemas.r1pro import STATE_KEY, camera_for_key
    from schemas.sample import JSON_MEMBER, SampleMeta
    from shards.codec import decode_sample
    from shards.reader import iter_tar_samples, open_shard_set

    start = time.perf_counter()
    policy = SmolVLAPolicy.from_pretrained(str(checkpoint))
    policy.eval()
    preprocess, postprocess = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    load_s = time.perf_counter() - start

    shard_set = open_shard_set(str(shards))
    manifest = shard_set.manifest
    val_urls = shard_set.urls("val")
    if not val_urls:
        raise click.ClickException(f"{shards} has no val split")
    # The held-out frame nearest the middle of its episode (in the first val shard).
    raws = list(iter_tar_samples(val_urls[0]))
    metas = [SampleMeta.from_json(json.loads(raw[JSON_MEMBER])) for raw in raws]
    pick = min(range(len(raws)), key=lambda i: abs(metas[i].progress - 0.5))
    sample, meta = decode_sample(raws[pick]), metas[pick]

    # A raw observation as a robot would give it: RGB images float [0, 1] CHW, the filtered state, the task.
    # The image keys are the checkpoint's own: the dataset's (`observation.images.rgb.head`) or, in
    # checkpoints written before those, the short ones (`observation.images.head`).
    observation = {}
    for key in policy.config.image_features:
        camera = camera_for_key(key).name
        if camera not in manifest.cameras:
            raise click.ClickException(
                f"the checkpoint expects camera {camera!r} ({key}), the shard set has none"
            )
        member = manifest.cameras[camera].member or f"{camera}.jpg"
        image = np.array(sample[member], dtype=np.uint8)  # HxWx3 RGB
        # a batch of one: lerobot's AddBatchDimensionProcessorStep batches only `observation.images.*`
        # keys, so the 2026 release's `observation.rgb.*` images would reach SmolVLA unbatched
        observation[key] = (torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)[None]
    observation[STATE_KEY] = torch.from_numpy(np.array(sample["state.npy"], dtype=np.float32))
    observation["task"] = meta.task
    missing = sorted(set(policy.config.input_features) - set(observation))
    if missing:
        raise click.ClickException(f"the checkpoint expects inputs the shard set does not have: {missing}")

    policy.reset()
    with torch.inference_mode():
        action = postprocess(policy.select_action(preprocess(observation)))
    action = action.detach().float().cpu().numpy().reshape(-1)
    recorded = np.asarray(sample["action.npy"], dtype=np.float64)[0]
    stats = manifest.stats.action
    lo, hi = np.asarray(stats.min), np.asarray(stats.max)
    span = np.maximum(hi - lo, 1e-6)
    return {
        "checkpoint": str(checkpoint),
        "policy_class": type(policy).__name__,
        "parameters": int(sum(p.numel() for p in policy.parameters())),
        "input_features": {k: list(v.shape) for k, v in policy.config.input_features.items()},
        "load_seconds": round(load_s, 2),
        "frame": {
            "key": sample["__key__"],
            "episode_index": meta.episode_index,
            "frame_index": meta.frame_index,
            "task": meta.task,
            "val_episodes": list(manifest.splits.val.episodes),
        },
        "action": [float(x) for x in action],
        "action_dim": int(action.shape[0]),
        "recorded_action": [float(x) for x in recorded],
        "action_names": list(manifest.action.names),
        # Data units: the unnormalised action falls in (or near) the range the training actions span.
        "within_train_range": bool(np.all((action >= lo - 0.5 * span) & (action <= hi + 0.5 * span))),
    }
