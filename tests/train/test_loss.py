"""Acceptance 5: the temporal weighting of SmolVLA's per-sample losses, by hand and against lerobot."""

from __future__ import annotations

import itertools

import pytest
import torch

from train import data as D
from train.loss import temporal_weights, to_policy_batch, weighted_loss
from train.model import build_policy, make_processors
from train.stream import read_shard

CHUNK = 8


@pytest.fixture(scope="module")
def setup(small_set, tiny_backbone):
    spec = D.open_data([str(small_set)])
    torch.manual_seed(0)
    policy, _ = build_policy(spec, pretrained=None, vlm_model=str(tiny_backbone), chunk_size=CHUNK)
    pre, _ = make_processors(policy.config, spec)
    items = [_item(raw, spec) for ref in spec.sources[0].train for raw in read_shard(ref.url)]
    return spec, policy, pre, items


def _item(raw, spec):
    """One decoded sample (row 0 of a one-sample batch), with the raw sample it came from."""
    batch = D.decode_batch([raw], D.SampleFormat.of(spec, CHUNK))
    return {**{key: value[0] for key, value in batch.items()}, "raw": raw}


def _batch(setup, items):
    spec, policy, pre, _ = setup
    raw = D.decode_batch([item["raw"] for item in items], D.SampleFormat.of(spec, CHUNK))
    batch = pre(to_policy_batch(raw, spec, torch.device("cpu")))
    progress = torch.tensor(raw["progress"])
    b = len(items)
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(b, CHUNK, policy.config.max_action_dim, generator=generator)
    time = torch.rand(b, generator=generator) * 0.9 + 0.05
    return batch, progress, noise, time


def _elementwise(policy, batch, noise, time):
    """SmolVLA's raw (B, T, D) flow-matching losses, through the model's own pieces."""
    images, img_masks = policy.prepare_images(batch)
    state = policy.prepare_state(batch)
    actions = policy.prepare_action(batch)
    losses = policy.model.forward(
        images,
        img_masks,
        batch["observation.language.tokens"],
        batch["observation.language.attention_mask"],
        state,
        actions,
        noise,
        time,
    )
    return losses[:, :, : policy.config.action_feature.shape[0]]


def _mixed_items(items):
    """Some samples with padded chunks (episode ends), some without, different progress."""
    padded = [it for it in items if it["action_is_pad"].any()]
    full = [it for it in items if not it["action_is_pad"].any()]
    return padded[:3] + full[:3] + padded[5:7]


def test_weighted_loss_equals_the_hand_computation(setup):
    spec, policy, _, items = setup
    chosen = _mixed_items(items)
    assert any(it["action_is_pad"].any() for it in chosen) and not all(
        it["action_is_pad"].any() for it in chosen
    )
    batch, progress, noise, time = _batch(setup, chosen)
    policy.eval()
    with torch.no_grad():
        per_sample, _ = policy.forward(dict(batch), noise=noise, time=time, reduction="none")
        elements = _elementwise(policy, batch, noise, time)
    alpha = 2.5
    loss, plain = weighted_loss(
        per_sample, temporal_weights(progress, alpha), batch["action_is_pad"], spec.action_dim
    )

    # By hand: every valid (step, dim) element of sample i weighs 1 + alpha * progress_i^2.
    numerator = denominator = 0.0
    per_sample_by_hand = []
    for i, item in enumerate(chosen):
        w = 1 + alpha * item["progress"] ** 2
        valid = [t for t in range(CHUNK) if not item["action_is_pad"][t]]
        total = sum(float(elements[i, t, d]) for t in valid for d in range(spec.action_dim))
        n = len(valid) * spec.action_dim
        per_sample_by_hand.append(total / n)
        numerator += w * total
        denominator += w * n
    assert per_sample.tolist() == pytest.approx(per_sample_by_hand, rel=1e-5)
    assert float(loss) == pytest.approx(numerator / denominator, rel=1e-6)
    # Equivalently: per-sample losses x weights normalised to mean 1 over the batch (weights w_i * n_i).
    counts = (~batch["action_is_pad"]).sum(1).float() * spec.action_dim
    v = temporal_weights(progress, alpha) * counts
    v = v / v.mean()
    assert float(v.mean()) == pytest.approx(1.0)
    assert float((per_sample * v).mean()) == pytest.approx(float(loss), rel=1e-6)
    assert float(loss) != pytest.approx(float(plain), rel=1e-3)  # the weighting does something


def test_without_padding_it_is_the_plain_weighted_mean(setup):
    spec, policy, _, items = setup
    chosen = [it for it in items if not it["action_is_pad"].any()][::7][:6]
    batch, progress, noise, time = _batch(setup, chosen)
    with torch.no_grad():
        per_sample, _ = policy.forward(dict(batch), noise=noise, time=time, reduction="none")
    w = temporal_weights(progress, 3.0)
    loss, _ = weighted_loss(per_sample, w, batch["action_is_pad"], spec.action_dim)
    assert float(loss) == pytest.approx(float((per_sample * w).sum() / w.sum()), rel=1e-6)
    normalised = w / w.mean()
    assert float(loss) == pytest.approx(float((per_sample * normalised).mean()), rel=1e-6)


@pytest.mark.parametrize("with_padding", [True, False])
def test_alpha_zero_is_lerobots_mean_loss(setup, with_padding):
    spec, policy, _, items = setup
    chosen = (
        _mixed_items(items) if with_padding else [it for it in items if not it["action_is_pad"].any()][:6]
    )
    batch, progress, noise, time = _batch(setup, chosen)
    with torch.no_grad():
        per_sample, _ = policy.forward(dict(batch), noise=noise, time=time, reduction="none")
        mean_loss, _ = policy.forward(dict(batch), noise=noise, time=time, reduction="mean")
    loss, plain = weighted_loss(
        per_sample, temporal_weights(progress, 0.0), batch["action_is_pad"], spec.action_dim
    )
    assert float(loss) == pytest.approx(float(mean_loss), abs=1e-6)
    assert float(plain) == pytest.approx(float(mean_loss), abs=1e-6)


def test_weights_follow_the_stored_progress(setup):
    _, _, _, items = setup
    progress = torch.tensor([it["progress"] for it in itertools.islice(items, 10)])
    assert torch.allclose(temporal_weights(progress, 2.0), 1 + 2.0 * progress**2)
    assert torch.equal(temporal_weights(progress, 0.0), torch.ones(10))
