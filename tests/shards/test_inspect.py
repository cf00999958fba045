"""`b1k-shards inspect`: the summary names what the set holds; `--sheet` writes a real PNG whose
camera tiles are the chosen samples' decoded images (issue 4, acceptance 4)."""

import json
import shutil

import numpy as np
from click.testing import CliRunner
from PIL import Image

from shards.cli import main
from shards.codec import decode_sample
from shards.inspect import (
    RESAMPLE,
    choose_samples,
    compress_indices,
    count_skills,
    render_contact_sheet,
    skill_counts,
    summarize,
)
from shards.reader import iter_tar_samples, open_shard_set
from tests.shardsets import CAMERAS, colour_of, read_manifest, skill_of, write_manifest


def inspect(*args):
    return CliRunner().invoke(main, ["inspect", *map(str, args)], catch_exceptions=False)


def test_summary(shard_set):
    result = inspect(shard_set)
    assert result.exit_code == 0, result.output
    out = result.output
    for text in [
        "schema      v1",
        "source      /data/synthetic (LeRobot v3.0, fingerprint synthetic-fi",
        "train       4 episodes, 25 samples, 25 source frames in 4 shards",
        "val         1 episodes, 5 samples, 5 source frames in 1 shards",
        "tasks       1: 0: pick up the egg",
        "head         24x32 jpeg q95  <- observation.images.rgb.head",
        "left_wrist   16x16 jpeg q95",
        "state       top32, 32 dims, indices 158:165,179:181,186:189,193:195,197:204,218:220,225:228,232:234,236:240",
        "arm_left_qpos_0",
        "horizon     4 frames (0.13 s at 30 fps); frame stride 1",
        "temporal    alpha 0.5; weight = 1 + alpha * progress**2",
        "stats       (train split; q01/q99 exact)",
        "(count 25)",
        "right_gripper",
    ]:
        assert text in out, text
    size = sum(p.stat().st_size for p in shard_set.glob("*.tar"))
    assert f"({size} B)" in out and "/frame over 30 samples" in out
    info = json.loads(inspect(shard_set, "--json").output)
    assert info["bytes"] == size and info["samples"] == 30
    assert info["bytes_per_frame"] == size / 30
    assert info["splits"]["train"] == {
        "episodes": 4,
        "samples": 25,
        "shards": 4,
        "bytes": info["splits"]["train"]["bytes"],
        "frames": 25,
    }
    assert "(train split; q01/q99 exact)" not in inspect(shard_set, "--no-stats").output


def test_summary_of_remote_and_partition_sets(make_set, http_server):
    www, base = http_server
    part = make_set("p1", partition=(1, 3))
    shutil.copytree(part, www / "p1")
    result = inspect(f"{base}/p1")
    assert result.exit_code == 0
    assert "partition   1/3" in result.output


def test_compress_indices():
    assert compress_indices([158, 159, 160, 179, 186, 187]) == "158:161,179,186:188"
    assert compress_indices([]) == ""


def test_contact_sheet_is_a_png_of_the_samples(shard_set, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = inspect(shard_set, "--sheet", sheet, "--samples", 3, "--tile-height", 48, "--no-stats")
    assert result.exit_code == 0, result.output
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keys = result.output.split("samples: ")[-1].strip().rstrip(")").split(", ")
    assert len(keys) == 3 and len(set(keys)) == 3
    s = open_shard_set(shard_set)
    decoded = {x["__key__"]: decode_sample(x) for url in s.urls("train") for x in iter_tar_samples(url)}
    samples = [decoded[k] for k in keys]
    assert len({x["json"]["episode_index"] for x in samples}) > 1  # spread over the set, not one episode

    _, layout = render_contact_sheet(s.manifest, samples, tile_height=48)
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == layout.size
        pixels = image.copy()
    assert [row["key"] for row in layout.rows] == keys
    for row, sample in zip(layout.rows, samples, strict=True):
        assert list(row["tiles"]) == list(CAMERAS)
        for camera, (left, top, right, bottom) in row["tiles"].items():
            assert bottom - top == 48
            tile = np.asarray(pixels.crop((left, top, right, bottom)))
            expected = np.asarray(
                Image.fromarray(sample[f"{camera}.jpg"]).resize((right - left, 48), RESAMPLE)
            )
            np.testing.assert_array_equal(tile, expected)
            # and it is this sample's frame: the flat colour that encodes (episode, frame, camera)
            centre = tile[tile.shape[0] * 3 // 4, tile.shape[1] * 3 // 4].astype(int)
            meta = sample["json"]
            assert np.abs(centre - colour_of(meta["episode_index"], meta["frame_index"], camera)).max() <= 6
        # the state and action panels are drawn (not blank)
        for panel in ("state", "action"):
            area = np.asarray(pixels.crop(row[panel]))
            assert (area != 255).any(axis=2).mean() > 0.005


def test_contact_sheet_with_chosen_keys(shard_set, tmp_path):
    sheet = tmp_path / "keys.png"
    keys = ["e00000003_f000004", "e00000003_f000000"]
    result = inspect(
        shard_set, "--sheet", sheet, "--split", "val", "--key", keys[0], "--key", keys[1], "--no-stats"
    )
    assert result.exit_code == 0, result.output
    assert f"2 samples: {keys[0]}, {keys[1]}" in result.output
    with Image.open(sheet) as image:
        assert image.size[1] > 2 * 160
    result = inspect(shard_set, "--sheet", sheet, "--key", "e00000099_f000000", "--no-stats")
    assert result.exit_code == 1 and "e00000099_f000000" in result.output


def test_choose_samples_spreads_over_shards(shard_set):
    s = open_shard_set(shard_set)
    chosen = choose_samples(s, 4)
    urls = {x["__url__"] for x in chosen}
    assert len(chosen) == 4 and len(urls) == 4
    assert len(choose_samples(s, 40)) == 25  # no more than the split holds


def test_cli_lists_its_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("inspect", "verify", "merge"):
        assert command in result.output


def test_summary_shows_episodes_and_samples_per_task(make_set):
    """Episodes 0, 1, 2, 4 (9, 6, 3, 7 frames) train, 3 (5 frames) val; episodes 1 and 3 are task 1."""
    two = make_set(
        "two", tasks={0: "pick up the egg", 1: "open the door"}, episode_tasks={0: 0, 1: 1, 2: 0, 3: 1, 4: 0}
    )
    result = inspect(two, "--no-stats")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "per task    task  train episodes   samples   share    val episodes   samples   share" in lines
    assert (
        "               0               3        19   76.0%               0         0    0.0%  pick up the egg"
        in lines
    )
    assert (
        "               1               1         6   24.0%               1         5  100.0%  open the door"
        in lines
    )
    info = json.loads(inspect(two, "--json").output)
    assert info["task_counts"]["train"] == {
        "0": {"task": "pick up the egg", "episodes": 3, "samples": 19},
        "1": {"task": "open the door", "episodes": 1, "samples": 6},
    }


def test_summary_of_a_set_without_task_counts_says_not_recorded(shard_set):
    manifest = read_manifest(shard_set)
    for split in ("train", "val"):
        del manifest["splits"][split]["tasks"]
    write_manifest(shard_set, manifest)
    result = inspect(shard_set, "--no-stats")
    assert result.exit_code == 0, result.output
    assert (
        "per task    not recorded" in result.output and "tasks       1: 0: pick up the egg" in result.output
    )
    assert json.loads(inspect(shard_set, "--json").output)["task_counts"] == {"train": None, "val": None}


def test_a_sheet_over_an_image_bomb_is_one_error_line_naming_the_shard_sample_and_member(shard_set, tmp_path):
    """A JPEG whose header claims 60000 x 60000 pixels: refused from its header, never decoded."""
    from shards.writer import write_tar

    bad = tmp_path / "bad"
    shutil.copytree(shard_set, bad)
    shard = bad / read_manifest(bad)["splits"]["val"]["shards"][0]["name"]
    raws = [dict(raw) for raw in iter_tar_samples(str(shard))]
    jpeg = bytes(raws[0]["head.jpg"])
    sof = jpeg.index(b"\xff\xc0")
    raws[0]["head.jpg"] = jpeg[: sof + 5] + (60000).to_bytes(2, "big") * 2 + jpeg[sof + 9 :]
    shard.unlink()
    write_tar(shard, ({k: v for k, v in raw.items() if k != "__url__"} for raw in raws))
    result = inspect(bad, "--sheet", tmp_path / "sheet.png", "--split", "val", "--samples", 2)
    assert result.exit_code != 0
    assert "error: contact sheet:" in result.output and "Traceback" not in result.output
    assert (
        f"sample {raws[0]['__key__']}: head.jpg: image header says 60000x60000, expected 24x32"
        in result.output
    )
    assert not (tmp_path / "sheet.png").exists()


# ------------------------------------------------------------------ per skill (issue 24)
def _written_skills(root, split: str) -> dict:
    """{skill or None: samples} of a split, read back from its samples' json."""
    s = open_shard_set(root)
    counts: dict = {}
    for url in s.urls(split):
        for raw in iter_tar_samples(url):
            skill = json.loads(bytes(raw["json"])).get("skill")
            counts[skill] = counts.get(skill, 0) + 1
    return counts


def test_summary_shows_samples_per_skill_from_the_manifest(make_set):
    """Episodes 0, 1, 2, 4 (9, 6, 3, 7 frames) train, 3 (5 frames) val, `skill_of`'s skills: the table
    holds the samples the shards hold per skill and split, most first, the unannotated last."""
    root = make_set("skills", skills=skill_of)
    train, val = _written_skills(root, "train"), _written_skills(root, "val")
    assert train == {"pick up from": 8, "place on": 8, "move to": 5, None: 4}
    assert val == {"pick up from": 2, "place on": 1, "move to": 1, None: 1}
    result = inspect(root, "--no-stats")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index(
        "per skill     train samples   share    val samples   share  skill (from the manifest)"
    )
    assert lines[start + 1 : start + 5] == [
        "                          8   32.0%              2   40.0%  pick up from",
        "                          8   32.0%              1   20.0%  place on",
        "                          5   20.0%              1   20.0%  move to",
        "                          4   16.0%              1   20.0%  (none)",
    ]
    info = json.loads(inspect(root, "--json").output)
    for split, written in (("train", train), ("val", val)):
        assert info["skill_counts"][split] == {
            "source": "manifest",
            "skills": {k: v for k, v in written.items() if k is not None},
            "unannotated": written[None],
        }


def test_skills_not_in_the_manifest_are_counted_from_the_samples(make_set, shard_set):
    """A manifest without `splits.<split>.skills`: the summary says so; `count_skills` counts what the
    samples hold (the same numbers) and the summary names that source. A set written before skills
    counts every sample unannotated."""
    root = make_set("skills", skills=skill_of)
    recorded = skill_counts(open_shard_set(root).manifest)
    manifest = read_manifest(root)
    for split in ("train", "val"):
        del manifest["splits"][split]["skills"]
    write_manifest(root, manifest)
    result = inspect(root, "--no-stats")
    assert result.exit_code == 0, result.output
    assert "per skill   not recorded in the manifest" in result.output
    assert json.loads(inspect(root, "--json").output)["skill_counts"] == {"train": None, "val": None}
    s = open_shard_set(root)
    counted = {split: count_skills(s, split) for split in ("train", "val")}
    for split in ("train", "val"):
        assert counted[split] == {**recorded[split], "source": "samples"}
    text = summarize(s.manifest, str(root), stats=False, skills=counted)
    assert "skill (counted from the samples)" in text and text.count("  (none)") == 1
    old = open_shard_set(shard_set)
    assert count_skills(old, "val") == {"source": "samples", "skills": {}, "unannotated": 5}


def test_a_skill_with_terminal_control_characters_is_printed_escaped(make_set):
    """An annotation is data: OSC 52 (write the clipboard) in a skill reaches the terminal as text."""
    root = make_set("osc", skills=lambda episode, frame, length: "\x1b]52;c;aGk=\x07pick up")
    result = inspect(root, "--no-stats")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "  \\x1b]52;c;aGk=\\x07pick up" in result.output
