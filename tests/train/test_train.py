"""b1k-train end to end: 8 workers, checkpoints lerobot loads as they are, exact resume, torchrun DDP,
fine-tuning from other features, and the errors of the issue."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from tests.runs import ENV, kill_and_resume, train_log
from tests.shardsets import write_shard_set
from train import cli
from train import loop as loop_mod


def _args(shards, backbone, out, *extra):
    return [
        "--shards", str(shards), "--vlm-model", str(backbone), "--output-dir", str(out), "--batch-size", "4",
        "--chunk-size", "8", "--log-every", "1", "--no-progress", *map(str, extra),
    ]  # fmt: skip


def _invoke(args):
    """b1k-train in this process (fast: no interpreter start); returns click's result."""
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


LOAD_AND_ACT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
    from shards.codec import decode_sample
    from shards.reader import iter_tar_samples

    checkpoint, shard = sys.argv[1], sys.argv[2]
    policy = SmolVLAPolicy.from_pretrained(checkpoint)
    pre, post = make_pre_post_processors(policy.config, pretrained_path=checkpoint)
    sample = decode_sample(next(iter_tar_samples(shard)))
    observation = {
        key: torch.from_numpy(sample[key.split(".")[-1] + ".jpg"]).permute(2, 0, 1).float() / 255
        for key in policy.config.image_features
    }
    observation["observation.state"] = torch.from_numpy(sample["state.npy"])
    observation["task"] = sample["json"]["task"]
    batch = pre(observation)
    torch.manual_seed(0)
    normalised = policy.select_action(batch)
    action = post(normalised)
    stats = json.load(open(sys.argv[3]))["stats"]  # the shard set's own stats: the data's units
    a_mean, a_std = (torch.tensor(stats["action"][k]) for k in ("mean", "std"))
    s_mean, s_std = (torch.tensor(stats["observation.state"][k]) for k in ("mean", "std"))
    print(json.dumps({
        "shape": list(action.shape),
        "unnormalised_error": float((action - (normalised * a_std + a_mean)).abs().max()),
        "state_error": float((batch["observation.state"][0] * s_std + s_mean - observation["observation.state"]).abs().max()),
        "finite": bool(torch.isfinite(action).all()),
        "action_range": [float(action.min()), float(action.max())],
        "type": policy.config.type,
    }))
    """
)


@pytest.mark.slow
def test_eight_workers_train_and_lerobot_loads_the_checkpoint(quickstart_run):
    """Acceptance 1: --num-workers 8 on the synthetic data (the README quick start's run, shared with
    tests/test_readme.py: 4 steps, val every 2); the checkpoint loads in a fresh process with lerobot's
    own SmolVLAPolicy.from_pretrained + processors; select_action gives 23 dims in data units."""
    done, out, shards = quickstart_run.done["b1k-train"], quickstart_run.run_dir, quickstart_run.shards
    assert done.args[done.args.index("--num-workers") + 1] == "8"
    assert "DataLoader worker" not in done.stderr and "Error" not in done.stderr
    train_records, val_log = train_log(out), train_log(out, "val")
    assert sorted(train_records) == [1, 2, 3, 4] and sorted(val_log) == [2, 4]
    for record in train_records.values():
        for key in ("loss", "weighted_loss", "lr", "grad_norm", "samples_per_s", "data_wait_share"):
            assert isinstance(record[key], float), key
    checkpoint = (out / "checkpoints" / "last").resolve() / "pretrained_model"
    assert checkpoint.parent.name == "000004"
    provenance = json.loads((checkpoint / "b1k_provenance.json").read_text())
    assert (
        provenance["state"]["indices"][:3] == [158, 159, 160]
        and len(provenance["sets"][0]["manifest_sha256"]) == 64
    )
    # lerobot's layout (<step>/pretrained_model) and the step dir itself hold the same files (hard links)
    for name in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"):
        assert (checkpoint / name).samefile(checkpoint.parent / name), name
    shard = sorted(shards.glob("val-*.tar"))[0]
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_AND_ACT, str(out / "checkpoints" / "last"), str(shard),
         str(shards / "manifest.json")],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    result = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert result["type"] == "smolvla" and result["shape"] == [1, 23] and result["finite"]
    assert result["unnormalised_error"] < 1e-5  # the postprocessor applied our action stats
    assert result["state_error"] < 1e-4  # the preprocessor normalised the raw state with our stats


@pytest.mark.slow
def test_kill_and_resume_equals_an_uninterrupted_run(small_set, tiny_backbone, tmp_path):
    """Acceptance 3: SIGKILL after a checkpoint, --resume: losses after it and final weights are equal
    (with validation and augmentation on, which must not disturb the order of random numbers)."""
    common = (
        "--max-steps", 12, "--save-every", 3, "--num-workers", 2, "--shuffle-buffer", 40,
        "--val-every", 4, "--val-batches", 2, "--augment",
    )  # fmt: skip
    run = kill_and_resume(
        lambda out: _args(small_set, tiny_backbone, out, *common), tmp_path, checkpoint=3, max_steps=12
    )
    ref, out, killed_at = run.ref, run.out, run.killed_at
    assert (
        f"resumed from {(out / 'checkpoints' / f'{killed_at:06d}').resolve()} at step {killed_at}"
        in run.resumed.stderr
    )
    ref_log, resumed_log = train_log(ref), train_log(out)
    assert train_log(out, "val")[12]["val_loss"] == pytest.approx(
        train_log(ref, "val")[12]["val_loss"], abs=1e-6
    )
    assert sorted(resumed_log) == list(range(1, 13))
    for step in range(killed_at + 1, 13):
        assert resumed_log[step]["weighted_loss"] == pytest.approx(
            ref_log[step]["weighted_loss"], abs=1e-6
        ), step
        assert resumed_log[step]["loss"] == pytest.approx(ref_log[step]["loss"], abs=1e-6), step
    final_ref = load_file(ref / "checkpoints" / "000012" / "pretrained_model" / "model.safetensors")
    final = load_file(out / "checkpoints" / "000012" / "pretrained_model" / "model.safetensors")
    assert final_ref.keys() == final.keys()
    assert max(float((final_ref[k] - final[k]).abs().max()) for k in final) <= 1e-6
    assert sorted(p.name for p in (ref / "checkpoints").iterdir()) == ["000006", "000009", "000012", "last"]


@pytest.mark.slow
def test_torchrun_two_ranks_see_disjoint_samples(small_set, tiny_backbone, tmp_path):
    """Acceptance 4: torchrun --nproc_per_node 2 on CPU (gloo) trains; the ranks' samples are disjoint."""
    out = tmp_path / "ddp"
    args = _args(small_set, tiny_backbone, out, "--max-steps", 3, "--num-workers", 1, "--device", "cpu")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, "-m", "train.cli", *args, "--log-sample-keys", "--val-every", "3", "--val-batches", "1"],
        capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    keys = {}
    for rank in (0, 1):
        lines = [
            json.loads(line) for line in (out / f"sample_keys_rank{rank}.jsonl").read_text().splitlines()
        ]
        assert [line["step"] for line in lines] == [1, 2, 3]
        keys[rank] = [key for line in lines for key in line["keys"]]
        assert len(keys[rank]) == 12
    assert not set(keys[0]) & set(keys[1])
    assert sorted(train_log(out)) == [1, 2, 3] and sorted(train_log(out, "val")) == [3]
    config = json.loads(
        (out / "checkpoints" / "000003" / "pretrained_model" / "b1k_train_config.json").read_text()
    )
    assert config["world_size"] == 2


def test_finetune_from_a_local_checkpoint_with_other_features(small_set, tiny_backbone, tmp_path):
    """Acceptance 6: start from a tiny SmolVLA with 2 cameras, 6-dim state and action; it reports what loaded."""
    from tests.train.test_model import _tiny_smolvla_checkpoint

    checkpoint, saved = _tiny_smolvla_checkpoint(tmp_path, tiny_backbone)
    out = tmp_path / "finetune"
    args = _args(small_set, tiny_backbone, out, "--max-steps", 2, "--num-workers", 0, "--val-every", 0)
    args[args.index("--vlm-model") : args.index("--vlm-model") + 2] = ["--pretrained-model", str(checkpoint)]
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    assert f"loaded {len(saved)} tensors" in result.output
    assert "adapted input_features" in result.output and "observation.images.top" in result.output
    provenance = json.loads(
        (out / "checkpoints" / "000002" / "pretrained_model" / "b1k_provenance.json").read_text()
    )
    assert provenance["load_report"]["loaded"] == len(saved)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_backbone, tmp_path):
    shards = tmp_path / "nan-set"
    write_shard_set(shards, episodes=6, length=12, horizon=8, nan_action=((3, 7),), samples_per_shard=20)
    out = tmp_path / "run"
    args = _args(shards, tiny_backbone, out, "--max-steps", 40, "--save-every", 1, "--keep-last", 2)
    result = _invoke([*args, "--num-workers", 0, "--val-every", 0])
    assert result.exit_code == 3, result.output
    message = next(line for line in result.output.splitlines() if line.startswith("error:"))
    step = int(message.split(" at step ")[1].split(";")[0])
    assert message.startswith(f"error: non-finite loss (nan) at step {step}; training stopped without saving")
    log = train_log(out)
    assert sorted(log) == list(range(1, step))  # every logged loss is a finite, good one
    if step > 1:
        assert f"the last good checkpoint is {out.resolve() / 'checkpoints' / f'{step - 1:06d}'}" in message
        names = sorted(p.name for p in (out / "checkpoints").iterdir())
        assert names[-2:] == [f"{step - 1:06d}", "last"] and f"{step:06d}" not in names
    else:
        assert "no checkpoint was saved before it" in message


def test_unreadable_shard_is_named(small_set, tiny_backbone, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(small_set, broken)
    for tar in broken.glob("train-*.tar"):
        tar.write_bytes(tar.read_bytes()[:600] + b"\x00garbage" * 500)
    args = _args(
        broken, tiny_backbone, tmp_path / "run", "--max-steps", 2, "--num-workers", 2, "--val-every", 0
    )
    result = _invoke(args)
    assert result.exit_code == 2
    error = next(line for line in result.output.splitlines() if line.startswith("error:"))
    assert error.startswith("error: corrupt shard ") and "/broken/train-00000" in error
    assert "b1k-shards verify" in error


@pytest.mark.slow
def test_skip_corrupt_counts_and_goes_on(small_set, tiny_backbone, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(small_set, broken)
    tar = broken / "train-000003.tar"
    good = tar.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF  # one flipped byte: only the sha256 at the end of the shard sees it
    tar.write_bytes(bytes(data))
    out = tmp_path / "run"
    args = _args(broken, tiny_backbone, out, "--max-steps", 60, "--save-every", 0, "--log-every", 20)
    result = _invoke([*args, "--num-workers", 0, "--val-every", 0, "--skip-corrupt"])
    assert result.exit_code == 0, result.output
    assert "skipped the rest of 1 corrupt shard" in result.output and "train-000003.tar" in result.output
    assert train_log(out)[60]["skipped_shards"] == 1
    # resumed after the shard was repaired: the record of its skip before stays (it was truncated on
    # every start)
    tar.write_bytes(good)
    args = _args(broken, tiny_backbone, out, "--max-steps", 61, "--save-every", 0, "--log-every", 1)
    result = _invoke([*args, "--num-workers", 0, "--val-every", 0, "--skip-corrupt", "--resume", "last"])
    assert result.exit_code == 0, result.output
    assert "train-000003.tar" in (out / "corrupt_shards_rank0.jsonl").read_text()
    assert train_log(out)[61]["skipped_shards"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--chunk-size", "9"], "--chunk-size 9 is above the stored horizon 8"),
        (["--gpu-id", "0"], "--gpu-id 0 given but CUDA is not available"),
    ],
)
def test_option_errors(small_set, tiny_backbone, tmp_path, change, message):
    if "--gpu-id" in change:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    args = _args(small_set, tiny_backbone, tmp_path / "run", "--max-steps", 1, "--num-workers", 0)
    if "--chunk-size" in change:
        args[args.index("--chunk-size") + 1] = change[1]
        change = []
    result = _invoke([*args, *change])
    assert result.exit_code == 2 and message in result.output


def test_missing_and_invalid_manifest(tiny_backbone, tmp_path):
    result = _invoke(_args(tmp_path, tiny_backbone, tmp_path / "run", "--max-steps", 1))
    assert result.exit_code == 2 and "no manifest.json here" in result.output
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 1, "created_by": {}}))
    result = _invoke(_args(tmp_path, tiny_backbone, tmp_path / "run", "--max-steps", 1))
    assert result.exit_code == 2 and "manifest.json: missing key 'source'" in result.output


def test_existing_checkpoints_need_resume(small_set, tiny_backbone, tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints" / "000005").mkdir(parents=True)
    result = _invoke(_args(small_set, tiny_backbone, out, "--max-steps", 1, "--num-workers", 0))
    assert result.exit_code == 2 and "already holds checkpoints: pass --resume" in result.output


def test_every_option_has_both_spellings(monkeypatch, tmp_path):
    seen = {}

    def fake_train(cfg):
        seen["cfg"] = cfg
        return loop_mod.TrainResult(step=0, last_checkpoint=None)

    monkeypatch.setattr(loop_mod, "train", fake_train)
    for option in cli.main.params:
        dashed = [o for o in option.opts + option.secondary_opts if "-" in o[2:]]
        for name in dashed:
            assert "--" + name[2:].replace("-", "_") in option.opts + option.secondary_opts, name
    result = _invoke(
        ["--shards", "a@2", "--shards", "b@1", "--batch_size", "3", "--max_steps", "7", "--chunk_size", "5",
         "--temporal_alpha", "0", "--num_workers", "2", "--output_dir", str(tmp_path), "--save_every", "4",
         "--keep_last", "1", "--log_every", "2", "--val_every", "3", "--warmup_steps", "1", "--decay_steps", "9",
         "--decay_lr", "1e-6", "--grad_clip", "0", "--no_freeze_vision", "--vlm_model", "/x", "--resume"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cfg = seen["cfg"]
    assert cfg.shards == ["a@2", "b@1"] and cfg.batch_size == 3 and cfg.max_steps == 7 and cfg.chunk_size == 5
    assert cfg.temporal_alpha == 0 and cfg.num_workers == 2 and cfg.save_every == 4 and cfg.keep_last == 1
    assert cfg.warmup_steps == 1 and cfg.decay_steps == 9 and cfg.decay_lr == 1e-6 and cfg.grad_clip == 0
    assert cfg.freeze_vision is False and cfg.resume == "last"
    assert cfg.vlm_model == "/x" and cfg.pretrained_model is None  # --vlm-model alone: no SmolVLA weights
    defaults = loop_mod.TrainConfig(shards=["x"])
    assert (defaults.batch_size, defaults.lr, defaults.chunk_size, defaults.num_workers) == (8, 1e-4, 50, 8)
    assert defaults.pretrained_model == "lerobot/smolvla_base"
    assert (defaults.warmup_steps, defaults.decay_steps, defaults.decay_lr, defaults.grad_clip) == (
        1000,
        30000,
        2.5e-6,
        10.0,
    )


@pytest.mark.parametrize("alpha", ["0", None])
def test_the_loop_weights_with_the_temporal_alpha(small_set, tiny_backbone, tmp_path, alpha):
    """alpha 0: the weighted loss is lerobot's mean loss; the manifest's alpha (2.0): they differ."""
    args = _args(
        small_set, tiny_backbone, tmp_path / "run", "--max-steps", 2, "--num-workers", 0, "--val-every", 0
    )
    result = _invoke([*args, *(["--temporal-alpha", alpha] if alpha else []), "--augment"])
    assert result.exit_code == 0, result.output
    log = train_log(tmp_path / "run")
    provenance = json.loads(
        (tmp_path / "run/checkpoints/000002/pretrained_model/b1k_provenance.json").read_text()
    )
    for record in log.values():
        if alpha == "0":
            assert record["weighted_loss"] == pytest.approx(record["loss"], abs=1e-6)
        else:
            assert abs(record["weighted_loss"] - record["loss"]) > 1e-4
    assert provenance["temporal_alpha"] == (0.0 if alpha else 2.0)


def test_augmentations_stay_in_range_and_touch_only_gripper_state(small_set):
    import torch

    from train import data as D
    from train.loss import color_jitter, gripper_jitter

    spec = D.open_data([str(small_set)])
    images = torch.rand(4, 3, 8, 8)
    jittered = color_jitter(images)
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.equal(jittered, images)
    state = torch.zeros(4, 32)
    noisy = gripper_jitter(state, spec)
    grippers = spec.gripper_state_dims()
    assert grippers == [12, 13, 26, 27]  # gripper_left_qpos, gripper_right_qpos in the top32 order
    changed = (noisy != 0).any(dim=0).nonzero().flatten().tolist()
    assert changed == grippers


def test_streams_a_shard_set_over_http(small_set, tiny_backbone, tmp_path):
    """--shards http://... : the manifest and the shards come over HTTP (2 workers)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(small_set))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        out = tmp_path / "run"
        args = _args(url, tiny_backbone, out, "--max-steps", 2, "--num-workers", 2, "--val-every", 2)
        result = _invoke([*args, "--val-batches", 1])
    finally:
        server.shutdown()
    assert result.exit_code == 0, result.output
    assert sorted(train_log(out)) == [1, 2] and sorted(train_log(out, "val")) == [2]
    provenance = json.loads((out / "checkpoints/000002/pretrained_model/b1k_provenance.json").read_text())
    assert provenance["sets"][0]["location"] == url


def test_offline_default_pretrained_model_says_to_pass_a_local_path(small_set, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = _invoke(["--shards", str(small_set), "--output-dir", str(tmp_path / "run"), "--chunk-size", "8"])
    assert result.exit_code == 2
    error = next(line for line in result.output.splitlines() if line.startswith("error:"))
    assert (
        "'lerobot/smolvla_base' is a Hugging Face Hub id" in error and "pass --pretrained-model DIR" in error
    )


@pytest.mark.slow
def test_resume_with_task_balance_is_exact_and_a_changed_balance_warns(make_shards, tiny_backbone, tmp_path):
    """--task-balance (8 episodes of one task, 2 of another: r = 4) logs its factors once, records them
    in the data position, and a run resumed from a checkpoint steps through the same samples with the
    same losses; resuming without --task-balance warns that the data order changes."""
    shards = make_shards(
        "balanced-train", episodes=11, length=10, val_episodes=(10,),
        episode_tasks={e: 0 if e < 8 else 1 for e in range(11)}, samples_per_shard=20,
    )  # fmt: skip
    out = tmp_path / "run"
    common = (
        "--max-steps", 6, "--save-every", 3, "--keep-last", 0, "--num-workers", 2, "--shuffle-buffer", 16,
        "--val-every", 0, "--log-sample-keys", "--task-balance",
    )  # fmt: skip
    first = _invoke(_args(shards, tiny_backbone, out, *common))
    assert first.exit_code == 0, first.output
    assert "80 samples x   1 =        80 per epoch: pick up the radio" in first.output
    assert "20 samples x   4 =        80 per epoch: put the dishes away" in first.output
    position = json.loads(
        (out / "checkpoints" / "000003" / "training_state" / "b1k_data_position.json").read_text()
    )
    assert position["task_repeats"] == {"pick up the radio": 1, "put the dishes away": 4}
    ref_losses = {step: r["weighted_loss"] for step, r in train_log(out).items()}

    resumed = _invoke(
        [*_args(shards, tiny_backbone, out, *common), "--resume", out / "checkpoints" / "000003"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert "the data order will differ" not in resumed.output
    for step in (4, 5, 6):
        assert train_log(out)[step]["weighted_loss"] == pytest.approx(ref_losses[step], abs=1e-6), step
    keys = [json.loads(line) for line in (out / "sample_keys_rank0.jsonl").read_text().splitlines()]
    assert [k["step"] for k in keys] == [1, 2, 3, 4, 5, 6, 4, 5, 6] and keys[6:] == keys[3:6]

    unbalanced = [a for a in common if a != "--task-balance"]
    refused = CliRunner().invoke(
        cli.main,
        [
            str(a)
            for a in (
                *_args(shards, tiny_backbone, out, *unbalanced),
                "--resume",
                out / "checkpoints" / "000003",
            )
        ],
    )
    assert refused.exit_code == 2
    assert "task_repeats: was {'pick up the radio': 1, 'put the dishes away': 4}, now None" in refused.output
    assert "--force-resume" in refused.output
    changed = _invoke(
        [
            *_args(shards, tiny_backbone, out, *unbalanced),
            "--resume",
            out / "checkpoints" / "000003",
            "--force-resume",
        ]
    )
    assert changed.exit_code == 0, changed.output
    assert (
        "--resume (--force-resume): task_repeats: was {'pick up the radio': 1, 'put the dishes away': 4}, now None"
        in (changed.output)
    )


def test_a_second_run_on_a_locked_output_dir_names_the_holder(small_set, tiny_backbone, tmp_path):
    from shards.lock import FolderLock

    out = tmp_path / "run"
    with FolderLock(out, "b1k-train"):
        result = CliRunner().invoke(
            cli.main, [str(a) for a in _args(small_set, tiny_backbone, out, "--max-steps", 1)]
        )
    assert result.exit_code == 2
    assert f"error: --output-dir {out} is in use by b1k-train (pid {os.getpid()} on" in result.output
    assert not (out / "checkpoints").exists()


def test_resume_refuses_changed_options_naming_each_and_force_resume_goes_on(
    small_set, tiny_backbone, tmp_path
):
    out = tmp_path / "run"
    common = ("--max-steps", 2, "--num-workers", 0, "--val-every", 0, "--save-every", 2)
    assert _invoke(_args(small_set, tiny_backbone, out, *common)).exit_code == 0
    changed = [
        *_args(small_set, tiny_backbone, out, *common),
        "--max-steps",
        3,
        "--seed",
        7,
        "--augment",
        "--resume",
    ]
    refused = CliRunner().invoke(cli.main, [str(a) for a in changed])
    assert refused.exit_code == 2
    assert "seed: was 1000, now 7" in refused.output and "augment: was False, now True" in refused.output
    assert "--force-resume" in refused.output and "Traceback" not in refused.output
    forced = _invoke([*changed, "--force-resume"])
    assert forced.exit_code == 0, forced.output
    assert "--resume (--force-resume): seed: was 1000, now 7" in forced.output
    assert "max_steps: was 2, now 3 (the LR schedule changes)" in forced.output
