"""`b1k-serve` driven by the evaluator's own client code: health, metadata, resets without replies,
2025 and 2026 observations at 224 and 720/480, batched and not, with and without chunk replay; actions
equal the in-process policy's bit for bit; bad input gets an error and serving goes on."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file
from websockets.exceptions import ConnectionClosedError

from deploy import cli
from deploy.adapter import CAMERA_KEYS, PROPRIO_KEY, TASK_KEY
from deploy.policy import ExecutionConfig, Policy
from deploy.server import PolicyServer, ServeConfig, ServerThread
from tests.deploy.evaluator_client import EvaluatorClient, observation
from tests.deploy.helpers import ServeProcess, chunk_model

LIMIT_MB = 16


def serve(model, execution: ExecutionConfig | None = None) -> ServerThread:
    execution = execution or ExecutionConfig()
    config = ServeConfig(host="127.0.0.1", ports=(0,), max_message_bytes=LIMIT_MB * 2**20)
    return ServerThread(PolicyServer(execution, config), lambda: model)


@pytest.fixture(scope="module")
def model_2025(checkpoint_2025):
    return chunk_model(checkpoint_2025)


@pytest.fixture(scope="module")
def server_2025(model_2025):
    with serve(model_2025) as thread:
        yield thread


def action_stats(checkpoint) -> tuple[np.ndarray, np.ndarray]:
    stats = load_file(checkpoint / "policy_postprocessor_step_0_unnormalizer_processor.safetensors")
    return stats["action.mean"].numpy(), stats["action.std"].numpy()


def assert_dataset_units(actions: np.ndarray, checkpoint) -> None:
    mean, std = action_stats(checkpoint)
    assert np.isfinite(actions).all()
    assert np.abs((actions - mean) / std).max() < 20  # a normalised action is ~N(0, 1) around the data


def drive(client: EvaluatorClient, proprio_dim: int, checkpoint) -> None:
    """The evaluator's calls: reset, then steps at 224 and at 720/480, batched and not, with and without
    `__action_chunk_size__`."""
    client.reset()
    for sizes in ((224, 224), (720, 480)):
        reply = client.infer(observation(1, proprio_dim=proprio_dim, sizes=sizes, task_id=1))
        assert reply["action"].shape == (23,) and reply["action"].dtype == np.float32
        assert "action_chunk" not in reply
        assert_dataset_units(reply["action"], checkpoint)
        reply = client.infer(
            {**observation(2, proprio_dim=proprio_dim, sizes=sizes), "__action_chunk_size__": 4}
        )
        assert reply["action_chunk"].shape == (4, 23)
        np.testing.assert_array_equal(reply["action_chunk"][0], reply["action"])
        batch = observation(3, proprio_dim=proprio_dim, sizes=sizes, batch=2)
        reply = client.infer(batch)
        assert reply["action"].shape == (2, 23)
        assert_dataset_units(reply["action"], checkpoint)
        reply = client.infer({**batch, "__action_chunk_size__": np.int64(3)})
        assert reply["action_chunk"].shape == (2, 3, 23) and reply["action"].shape == (2, 23)
        np.testing.assert_array_equal(reply["action_chunk"][:, 0], reply["action"])
        client.reset()


def test_the_evaluator_client_drives_b1k_serve_on_a_b1k_train_checkpoint(checkpoint_2025):
    run_dir = checkpoint_2025.parent.parent.parent  # <run>/checkpoints/last/pretrained_model
    with ServeProcess(["--checkpoint", str(run_dir), "--port", "0", "--device", "cpu"]) as server:
        with EvaluatorClient("127.0.0.1", server.port) as client:
            assert client.metadata["action_dim"] == 23 and client.metadata["proprio_dim"] == 256
            assert client.metadata["tasks"] == {"0": "pick up the radio", "1": "put the dishes away"}
            drive(client, 256, checkpoint_2025)
        server.wait_for(r"connection 1 closed: 2 episodes, 8 steps, 0 errors; latency p50 [\d.]+ ms", 30)
        assert server.stop() == 0  # SIGTERM: a clean stop
    assert "connection 1 from" in server.log and "stopped" in server.log


def test_a_2026_checkpoint_serves_the_61_dim_proprio(checkpoint_2026):
    with serve(chunk_model(checkpoint_2026)) as thread, EvaluatorClient("127.0.0.1", thread.port) as client:
        assert client.metadata["state_layout"] == "r1pro-2026" and client.metadata["proprio_dim"] == 61
        drive(client, 61, checkpoint_2026)


def test_health_answers_200_and_a_reset_gets_no_reply(server_2025):
    with urllib.request.urlopen(f"http://127.0.0.1:{server_2025.port}/healthz", timeout=10) as response:
        assert response.status == 200
    with EvaluatorClient("127.0.0.1", server_2025.port) as client:
        client.reset()
        with pytest.raises(TimeoutError):
            client.ws.recv(timeout=1.0)
        assert client.infer(observation(5))["action"].shape == (23,)  # the reply is this observation's


def test_actions_through_the_server_equal_the_in_process_policy_bit_for_bit(server_2025, model_2025):
    episode = [observation(60 + t, task_id=t % 2) for t in range(10)]
    in_process = Policy(model_2025)
    expected = [in_process.act(o) for o in episode]
    in_process.reset()
    expected_chunk = in_process.act_chunk(episode[0], 6)[1]
    with EvaluatorClient("127.0.0.1", server_2025.port) as client:
        client.reset()
        got = [client.infer(o)["action"] for o in episode]
        client.reset()
        got_chunk = client.infer({**episode[0], "__action_chunk_size__": 6})["action_chunk"]
    np.testing.assert_array_equal(np.stack(got), np.stack(expected))
    np.testing.assert_array_equal(got_chunk, expected_chunk)


def test_each_connection_has_its_own_chunk_state(server_2025):
    episode = [observation(70 + t) for t in range(4)]
    with (
        EvaluatorClient("127.0.0.1", server_2025.port) as a,
        EvaluatorClient("127.0.0.1", server_2025.port) as b,
    ):
        a.reset()
        b.reset()
        from_a = [a.infer(o)["action"] for o in episode[:2]]
        from_b = [b.infer(o)["action"] for o in episode]  # interleaved with a's steps
        from_a += [a.infer(o)["action"] for o in episode[2:]]
    np.testing.assert_array_equal(np.stack(from_a), np.stack(from_b))


def _without(key: str) -> dict:
    obs = observation(80)
    del obs[key]
    return obs


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (_without(CAMERA_KEYS["right_wrist"]), f"error: {CAMERA_KEYS['right_wrist']}: missing"),
        ({**observation(80), PROPRIO_KEY: np.zeros(100)}, f"error: {PROPRIO_KEY}: expected shape [256]"),
        ({**observation(80), TASK_KEY: np.int64(42)}, "error: task_id: 42 is none of the checkpoint's tasks"),
        ({**observation(80), "__action_chunk_size__": 0}, "error: __action_chunk_size__: 0, expected K >= 1"),
    ],
)
def test_a_bad_observation_gets_a_text_error_and_the_connection_goes_on(server_2025, obs, message):
    with EvaluatorClient("127.0.0.1", server_2025.port) as client:
        with pytest.raises(RuntimeError, match="Error in inference server") as info:
            client.infer(obs)
        assert message in str(info.value)
        assert client.infer(observation(81))["action"].shape == (23,)


def test_a_huge_image_and_a_non_msgpack_frame_get_errors_and_others_are_still_served(server_2025):
    huge = {b"__ndarray__": True, b"data": b"\x00" * 16, b"dtype": "|u1", b"shape": [60000, 60000, 4]}
    with (
        EvaluatorClient("127.0.0.1", server_2025.port) as bystander,
        EvaluatorClient("127.0.0.1", server_2025.port) as client,
    ):
        with pytest.raises(
            RuntimeError,
            match=r"array of shape \(60000, 60000, 4\) uint8 needs 14,400,000,000 bytes, above the limit",
        ):
            client.infer({**observation(82), CAMERA_KEYS["head"]: huge})
        client.ws.send(b"\x93\x01 not msgpack")
        assert client.ws.recv(timeout=30).startswith("error: the frame is not one msgpack message")
        client.ws.send("a text frame")
        assert client.ws.recv(timeout=30) == "error: expected a binary msgpack frame, got a text frame"
        assert bystander.infer(observation(83))["action"].shape == (23,)
        client.ws.send(b"\x00" * (LIMIT_MB * 2**20 + 1))  # above --max-message-mb: the connection is closed
        with pytest.raises(ConnectionClosedError) as info:
            client.ws.recv(timeout=30)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        assert bystander.infer(observation(84))["action"].shape == (23,)
    with EvaluatorClient("127.0.0.1", server_2025.port) as fresh:
        assert fresh.infer(observation(85))["action"].shape == (23,)


def test_a_legacy_checkpoint_needs_a_prompt_and_is_served_with_one(legacy_checkpoint):
    result = CliRunner().invoke(cli.main, ["--checkpoint", str(legacy_checkpoint), "--device", "cpu"])
    assert result.exit_code == 2
    assert "error: the checkpoint records no task table" in result.output and "pass --prompt" in result.output
    model = chunk_model(legacy_checkpoint, prompt="pick up the radio")
    assert model.spec.cameras[0].key == "observation.images.head"
    assert model.spec.layout.name == "r1pro-2025"
    with serve(model) as thread, EvaluatorClient("127.0.0.1", thread.port) as client:
        assert client.infer(observation(90, task_id=17))["action"].shape == (23,)


def test_option_mistakes_are_one_line_errors(checkpoint_2025, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli.main, ["--checkpoint", str(tmp_path), "--device", "cpu"])
    assert (
        result.exit_code == 2
        and result.output.startswith("error: --checkpoint")
        and "not a checkpoint" in result.output
    )
    result = runner.invoke(
        cli.main, ["--checkpoint", str(checkpoint_2025), "--device", "cpu", "--action-steps", "9"]
    )
    assert result.exit_code == 2 and "error: --action-steps 9: must be 1..8 (the chunk size)" in result.output
