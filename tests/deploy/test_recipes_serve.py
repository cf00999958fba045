"""`b1k-serve` on a checkpoint of the 2025 winners' recipe (relative arm/torso actions, per-chunk-step
normalisation, EMA weights): driven by the evaluator's client; its chunks are the model's chunks
unnormalised step by step plus the state the chunk was predicted from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from deploy.policy import Policy
from schemas.r1pro import action_group_dims
from tests.deploy.evaluator_client import EvaluatorClient, observation
from tests.deploy.helpers import ServeProcess, chunk_model

RELATIVE = list(action_group_dims(("torso", "left_arm", "right_arm")))


@pytest.mark.slow
def test_the_evaluator_client_drives_b1k_serve_on_a_relative_per_timestep_checkpoint(checkpoint_relative):
    in_process = Policy(chunk_model(checkpoint_relative))
    episode = [observation(40 + t, task_id=t % 2) for t in range(3)]
    expected = [in_process.act(o) for o in episode]
    with ServeProcess(["--checkpoint", str(checkpoint_relative), "--port", "0", "--device", "cpu"]) as server:
        with EvaluatorClient("127.0.0.1", server.port) as client:
            assert client.metadata["action_recipe"] == "relative/per_timestep/ema0.9"
            client.reset()
            for obs, action in zip(episode, expected, strict=True):
                reply = client.infer(obs)
                assert reply["action"].shape == (23,) and np.isfinite(reply["action"]).all()
                np.testing.assert_array_equal(reply["action"], action)  # the in-process policy's
            for sizes in ((224, 224), (720, 480)):
                client.reset()
                reply = client.infer({**observation(7, sizes=sizes), "__action_chunk_size__": 5})
                assert reply["action_chunk"].shape == (5, 23) and np.isfinite(reply["action_chunk"]).all()
                np.testing.assert_array_equal(reply["action_chunk"][0], reply["action"])
                batch = observation(8, sizes=sizes, batch=2)
                reply = client.infer({**batch, "__action_chunk_size__": np.int64(8)})
                assert reply["action_chunk"].shape == (2, 8, 23) and np.isfinite(reply["action_chunk"]).all()
        server.wait_for(r"connection 1 closed: .* 0 errors", 30)
        assert server.stop() == 0


def test_a_served_chunk_is_the_models_chunk_unnormalised_per_step_plus_the_state(checkpoint_relative):
    model = chunk_model(checkpoint_relative)
    obs = observation(11, batch=2)
    inputs, _ = model.adapter(obs)
    noise = model.noise(2, torch.Generator().manual_seed(5))
    served = model.predict(inputs, noise).actions
    loaded = model.checkpoint
    with torch.no_grad():
        raw = loaded.policy.predict_action_chunk(loaded.preprocessor(model.to_batch(inputs)), noise=noise)
    stats = load_file(checkpoint_relative / "policy_postprocessor_step_1.safetensors")
    expected = raw.numpy() * stats["action.std"].numpy() + stats["action.mean"].numpy()
    expected[..., RELATIVE] += inputs.state[:, None, RELATIVE]  # the aligned state's first 23 dims
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    assert stats["action.mean"].shape == (loaded.spec.chunk_size, 23)
    # the checkpoint's weights are the EMA's: the raw ones are in training_state/, and differ
    run_step = checkpoint_relative.resolve().parent
    raw_weights = load_file(run_step / "training_state" / "b1k_raw_model.safetensors")
    ema = load_file(checkpoint_relative / "model.safetensors")
    assert any(not torch.equal(raw_weights[k], ema[k]) for k in raw_weights)
