"""SmolVLA at its real size (`b1k-tiny-backbone --architecture smolvlm2-500m`, random weights): its
parameter count, the FLOPs of one training step (forward + backward, counted by torch's
`FlopCounterMode` on the real graph) and the measured CPU step time at batch 2.

The FLOPs give the GPU step time the trainer section's consumer sleeps (`gpu_step_estimate`):
no GPU is lent here, so the figure is FLOPs / (peak x utilisation), cross-checked against the one
published SmolVLA step time on an H100 (see `LEROBOT_H100_UPDATE_S`).

    python -m tests.benchmarks.model_bench --out /tmp/model-bench
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from schemas.r1pro import ACTION_KEY, CAMERAS, STATE_KEY

STATE_DIM = 256  # the BEHAVIOR R1Pro state and action (as the bench's dataset)
ACTION_DIM = 23
CHUNK = 50
LANG_TOKENS = 48  # SmolVLA's tokenizer_max_length: prompts are padded to it

# H100 SXM dense bf16 peak (NVIDIA H100 datasheet: 989 TFLOP/s without sparsity).
H100_BF16_PEAK_FLOPS = 989e12
# Model FLOPs utilisation assumed for SmolVLA's eager PyTorch step in bf16 autocast: small matrices
# (hidden 720-960, ~300 tokens) and many small kernels keep it well below large-LLM figures (~40-50%).
ASSUMED_MFU = 0.30
# The one published SmolVLA step time on an H100 (lerobot docs, "Compute HW Guide", reference data
# on 4x H100 80 GB, batch 32 per GPU, AdamW, ~640x480 images): update_s 0.312 s, with the vision
# encoder and the VLM trained too (freeze_vision_encoder=false, train_expert_only=false), fp32.
LEROBOT_H100_UPDATE_S = 0.312


def smolvla_config(backbone: Path, *, image_size: int, train_expert_only: bool = True):
    """SmolVLA on `backbone` as b1k-train builds it (3 R1Pro cameras, 256-dim state, 23-dim action)."""
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    config = SmolVLAConfig(
        vlm_model_name=str(backbone),
        load_vlm_weights=False,
        resize_imgs_with_padding=(image_size, image_size),
        chunk_size=CHUNK,
        n_action_steps=CHUNK,
        max_state_dim=STATE_DIM,
        max_action_dim=32,
        empty_cameras=0,
        device="cpu",
        freeze_vision_encoder=train_expert_only,
        train_expert_only=train_expert_only,
    )
    config.input_features = {
        c.policy_key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, image_size, image_size))
        for c in CAMERAS
    }
    config.input_features[STATE_KEY] = PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,))
    config.output_features = {ACTION_KEY: PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))}
    return config


def fake_batch(batch_size: int, image_size: int, seed: int = 0) -> dict:
    """A batch as SmolVLA's forward takes it (after the pre-processor): images in [0, 1], tokens."""
    import torch

    g = torch.Generator().manual_seed(seed)
    batch = {c.policy_key: torch.rand(batch_size, 3, image_size, image_size, generator=g) for c in CAMERAS}
    batch[STATE_KEY] = torch.randn(batch_size, STATE_DIM, generator=g)
    batch[ACTION_KEY] = torch.randn(batch_size, CHUNK, ACTION_DIM, generator=g)
    batch["action_is_pad"] = torch.zeros(batch_size, CHUNK, dtype=torch.bool)
    batch["observation.language.tokens"] = torch.randint(10, 400, (batch_size, LANG_TOKENS), generator=g)
    batch["observation.language.attention_mask"] = torch.ones(batch_size, LANG_TOKENS, dtype=torch.bool)
    return batch


def train_step(policy, batch) -> None:
    loss, _ = policy.forward(dict(batch))
    loss.backward()


def step_flops(policy, batch) -> int:
    """FLOPs of one forward + backward, counted on the real graph (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        train_step(policy, batch)
    policy.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def gpu_step_estimate(flops_per_sample: float, batch_size: int = 32) -> dict:
    """The H100 step time at `batch_size`: FLOPs / (bf16 peak x assumed utilisation)."""
    flops = flops_per_sample * batch_size
    return {
        "batch_size": batch_size,
        "step_flops": flops,
        "peak_flops": H100_BF16_PEAK_FLOPS,
        "assumed_mfu": ASSUMED_MFU,
        "step_s": flops / (H100_BF16_PEAK_FLOPS * ASSUMED_MFU),
    }


def measure(out: Path, *, batch_size: int = 2, cpu_steps: int = 2, full_training: bool = True) -> dict:
    import torch
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from demo.backbone import SMOLVLM2_500M, build_tiny_backbone

    backbone = build_tiny_backbone(out / "smolvlm2-500m", SMOLVLM2_500M)
    size = SMOLVLM2_500M.image_size
    result: dict = {"backbone": str(backbone), "batch_size": batch_size, "image_size": size}
    torch.manual_seed(0)
    started = time.perf_counter()
    policy = SmolVLAPolicy(smolvla_config(backbone, image_size=size))
    policy.train()
    result["build_s"] = time.perf_counter() - started
    result["params"] = sum(p.numel() for p in policy.parameters())
    result["trainable_params"] = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    batch = fake_batch(batch_size, size)
    flops = step_flops(policy, batch)  # also the warm-up step
    result["flops_per_sample"] = flops / batch_size
    times = []
    for _ in range(cpu_steps):
        started = time.perf_counter()
        train_step(policy, batch)
        times.append(time.perf_counter() - started)
        policy.zero_grad(set_to_none=True)
    result["cpu_step_s"] = min(times)
    result["cpu_step_rounds_s"] = times
    result["cpu_threads"] = torch.get_num_threads()
    result["gpu_estimate"] = gpu_step_estimate(result["flops_per_sample"])
    if full_training:  # the configuration of lerobot's published H100 number, to scale it to ours
        del policy
        full = SmolVLAPolicy(smolvla_config(backbone, image_size=size, train_expert_only=False))
        full.train()
        result["full_training_flops_per_sample"] = step_flops(full, batch) / batch_size
        ratio = result["flops_per_sample"] / result["full_training_flops_per_sample"]
        result["lerobot_h100_update_s"] = LEROBOT_H100_UPDATE_S
        result["lerobot_h100_scaled_step_s"] = LEROBOT_H100_UPDATE_S * ratio
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.model_bench")
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--cpu-steps", type=int, default=2)
    parser.add_argument("--no-full-training", action="store_true")
    args = parser.parse_args(argv)
    result = measure(
        Path(args.out),
        batch_size=args.batch_size,
        cpu_steps=args.cpu_steps,
        full_training=not args.no_full_training,
    )
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
