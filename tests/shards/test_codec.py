"""shards.codec: a v1 sample survives encode -> tar -> decode exactly (npy, json) or within JPEG
error (images; PNG exactly)."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from schemas.sample import member_names, sample_problems
from shards import codec
from shards.codec import (
    decode_image,
    decode_npy,
    decode_sample,
    encode_jpeg,
    encode_npy,
    encode_png,
    encode_sample,
    npy_into,
)
from shards.reader import iter_tar_samples
from shards.writer import write_tar


def _sample(encoding="jpeg"):
    rng = np.random.default_rng(0)
    image = np.zeros((12, 20, 3), np.uint8)
    image[:, :10] = (200, 30, 60)
    image[:, 10:] = (10, 220, 90)
    encode = (lambda a: encode_jpeg(a, 95)) if encoding == "jpeg" else encode_png
    images = {c: encode(image) for c in ("head", "left_wrist", "right_wrist")}
    state = rng.normal(size=32).astype(np.float32)
    action = rng.normal(size=(5, 23)).astype(np.float32)
    is_pad = np.array([False, False, False, True, True])
    meta = {
        "episode_index": 7,
        "frame_index": 3,
        "episode_length": 6,
        "timestamp": 0.1,
        "progress": 0.6,
        "weight": 1.18,
        "task_index": 1,
        "task": "hide the eggs",
    }
    return (
        image,
        state,
        action,
        is_pad,
        meta,
        encode_sample("e00000007_f000003", images, state, action, is_pad, meta, encoding),
    )


@pytest.mark.parametrize("encoding", ["jpeg", "png"])
def test_round_trip_through_a_tar(tmp_path, encoding):
    image, state, action, is_pad, meta, raw = _sample(encoding)
    ext = "jpg" if encoding == "jpeg" else "png"
    assert set(raw) == {"__key__", *member_names(["head", "left_wrist", "right_wrist"], encoding)}
    assert f"head.{ext}" in raw
    info = write_tar(tmp_path / "one.tar", [raw])
    assert info.samples == 1
    (read,) = list(iter_tar_samples(str(tmp_path / "one.tar")))
    decoded = decode_sample(read)
    assert decoded["__key__"] == "e00000007_f000003"
    assert decoded["__url__"] == str(tmp_path / "one.tar")
    np.testing.assert_array_equal(decoded["state.npy"], state)
    np.testing.assert_array_equal(decoded["action.npy"], action)
    np.testing.assert_array_equal(decoded["action_is_pad.npy"], is_pad)
    assert decoded["action_is_pad.npy"].dtype == np.bool_
    assert decoded["json"] == meta
    assert sample_problems(decoded, 32, 23, 5) == []
    for camera in ("head", "left_wrist", "right_wrist"):
        got = decoded[f"{camera}.{ext}"]
        assert got.shape == image.shape and got.dtype == np.uint8
        if encoding == "png":
            np.testing.assert_array_equal(got, image)
        else:
            assert np.abs(got.astype(int) - image.astype(int)).mean() < 8  # a sharp colour edge, 4:2:0 chroma


def test_encode_sample_casts_dtypes_and_sorts_json():
    raw = encode_sample(
        "e00000000_f000000",
        {},
        np.arange(3, dtype=np.float64),
        np.zeros((2, 23), np.int64),
        np.array([0, 1]),
        {"b": 1, "a": 2},
    )
    assert decode_npy(raw["state.npy"]).dtype == np.float32
    assert decode_npy(raw["action.npy"]).dtype == np.float32
    assert decode_npy(raw["action_is_pad.npy"]).tolist() == [False, True]
    assert raw["json"] == json.dumps({"a": 2, "b": 1}).encode()


def test_skip_images_leaves_bytes():
    *_, raw = _sample()
    decoded = decode_sample(raw, skip_images=True)
    assert decoded["head.jpg"] == raw["head.jpg"]
    assert isinstance(decoded["state.npy"], np.ndarray)


def test_npy_refuses_pickles():
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        decode_npy(buffer.getvalue())


def test_decode_image_converts_to_rgb():
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 6), 128, np.uint8)).save(buffer, format="PNG")
    assert decode_image(buffer.getvalue()).shape == (4, 6, 3)


def test_npy_members_copy_into_a_buffer_row_exactly():
    array = np.arange(32, dtype=np.float32)
    out = np.full((4, 32), -1, np.float32)
    npy_into(memoryview(encode_npy(array)), out[2])  # a view of a mapped shard, as the trainer has
    np.testing.assert_array_equal(out[2], array)
    assert (out[[0, 1, 3]] == -1).all()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.arange(1, dtype=np.float32), r"expected float32\[32\], got float32\[1\]"),  # would broadcast
        (np.arange(64, dtype=np.float32).reshape(2, 32), r"expected float32\[32\], got float32\[2, 32\]"),
        (np.arange(32, dtype=np.float64), r"expected float32\[32\], got float64\[32\]"),  # no casts
        (np.arange(32, dtype=">f4"), r"expected float32\[32\], got float32 \(>f4\)\[32\]"),
    ],
)
def test_a_member_that_is_not_exactly_the_schemas_array_is_refused_before_it_reaches_the_row(array, message):
    """A misshapen member is never broadcast, cast or copied into a batch row: the row stays untouched."""
    out = np.full((4, 32), -1, np.float32)
    with pytest.raises(ValueError, match=message):
        npy_into(memoryview(encode_npy(array)), out[2])
    assert (out == -1).all()


def test_npy_rows_copy_a_chunk_out_of_the_stored_horizon():
    horizon = np.arange(30 * 4, dtype=np.float32).reshape(30, 4)
    out = np.zeros((2, 5, 4), np.float32)
    npy_into(encode_npy(horizon), out[1], rows=30)
    np.testing.assert_array_equal(out[1], horizon[:5])
    with pytest.raises(ValueError, match=r"expected float32\[30, 4\], got float32\[3, 4\]"):
        npy_into(encode_npy(horizon[:3]), out[1], rows=30)
    with pytest.raises(ValueError, match=r"expected float32\[30, 4\], got float32\[31, 4\]"):
        npy_into(encode_npy(np.zeros((31, 4), np.float32)), out[1], rows=30)
    with pytest.raises(ValueError):  # without rows: the shape must be the row's
        npy_into(encode_npy(horizon), out[1])
    with pytest.raises(ValueError):
        npy_into(encode_npy(np.zeros((30, 5), np.float32)), out[1], rows=30)


def test_an_image_is_checked_against_its_expected_size_before_it_is_decoded():
    """A JPEG whose header claims 60000 x 60000 pixels is refused from its header: nothing is allocated."""
    from shards.codec import check_image_size, decode_image_into, encode_jpeg, image_size

    jpeg = encode_jpeg(np.zeros((16, 24, 3), np.uint8), 90)
    assert image_size(jpeg) == (16, 24)
    assert image_size(encode_png(np.zeros((7, 5, 3), np.uint8))) == (7, 5)
    sof = jpeg.index(b"\xff\xc0")
    bomb = jpeg[: sof + 5] + (60000).to_bytes(2, "big") * 2 + jpeg[sof + 9 :]
    assert image_size(bomb) == (60000, 60000)
    out = np.zeros((16, 24, 3), np.uint8)
    with pytest.raises(ValueError, match=r"image header says 60000x60000, expected 16x24"):
        decode_image_into(bomb, out)
    with pytest.raises(ValueError, match=r"image header says 60000x60000, expected 16x24"):
        decode_image(bomb, expected=(16, 24))
    with pytest.raises(ValueError, match="not a JPEG or PNG"):
        check_image_size(b"GIF89a....", 16, 24)


def test_npy_bytes_that_are_not_npy_are_refused():
    with pytest.raises(ValueError):
        decode_npy(b"not an npy member")


def _textured(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth gradients plus noise: JPEG blocks of every kind (flat images hide upsampling errors)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (height + width)], axis=-1)
    return np.clip(base + rng.integers(-40, 40, size=(height, width, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "height, width, mode", [(48, 64, "RGB"), (37, 53, "RGB"), (32, 40, "L")], ids=["even", "odd", "gray"]
)
def test_images_decode_into_a_buffer_as_torchvision_decodes_them(height, width, mode):
    """decode_image_into (the trainer's decoder) gives torchvision's pixels exactly: JPEGs decoded
    straight into the buffer (simplejpeg), PNGs decoded by torchvision and copied in."""
    image = Image.fromarray(_textured(height, width, seed=height))
    for data in (
        encode_jpeg(np.asarray(image), 90),
        _pillow_jpeg(image.convert(mode)),
        encode_png(np.asarray(image)),
    ):
        expected = codec.decode_image_tensor(data).permute(1, 2, 0).numpy()
        for out in (np.zeros((height, width, 3), np.uint8), np.zeros((2, height, width, 3), np.uint8)[1]):
            codec.decode_image_into(memoryview(data), out)
            np.testing.assert_array_equal(out, expected)


def _pillow_jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, subsampling=0)  # 4:4:4, unlike encode_jpeg's 4:2:0
    return out.getvalue()


def test_an_image_of_another_size_or_a_corrupt_one_is_an_error():
    data = encode_jpeg(_textured(48, 64, seed=1), 90)
    with pytest.raises(ValueError, match=r"image header says 48x64, expected 40x64"):
        codec.decode_image_into(data, np.zeros((40, 64, 3), np.uint8))
    truncated, out = data[: len(data) // 3], np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(RuntimeError):  # libjpeg would pad it with grey: declined, and torchvision says why
        codec.decode_image_into(truncated, out)
