"""The wire format against the evaluator's own msgpack_numpy code, and what decoding refuses."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from deploy import wire
from tests.deploy import evaluator_client as client


def test_the_evaluators_messages_decode_and_ours_decode_with_its_code():
    sent = {
        "robot_r1::proprio": np.linspace(0, 1, 256),
        "rgb": np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        "task_id": np.int64(6),
        "__action_chunk_size__": 5,
    }
    got = wire.unpack(client.packb(sent), max_array_bytes=2**20)
    assert got.keys() == sent.keys()
    np.testing.assert_array_equal(got["robot_r1::proprio"], sent["robot_r1::proprio"])
    assert got["rgb"].dtype == np.uint8 and got["rgb"].shape == (2, 3, 4)
    assert got["task_id"] == 6 and isinstance(got["task_id"], np.int64)
    reply = client.unpackb(wire.pack({"action": np.arange(23, dtype=np.float32)}))
    assert reply["action"].dtype == np.float32 and reply["action"].shape == (23,)


def _array(dtype: str, shape: list[int], data: bytes) -> bytes:
    return msgpack.packb({"img": {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}})


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"not msgpack at all", "not one msgpack message"),
        (b"\xc1", "not one msgpack message"),
        (msgpack.packb([1, 2, 3]), "must be a msgpack map"),
        (_array("|O", [2], b"ab"), "img: dtype '|O' is not allowed"),
        (_array("<c16", [1], bytes(16)), "img: dtype '<c16' is not allowed"),
        (
            _array("|u1", [60000, 60000, 4], b"tiny"),
            "img: array of shape (60000, 60000, 4) uint8 needs 14,400,000,000 bytes, above the limit",
        ),
        (_array("|u1", [2, 2], b"abc"), "img: array of shape (2, 2) uint8 needs 4 bytes, the message has 3"),
        (_array("|u1", [-1], b""), "img: shape must be a list"),
        (msgpack.packb({1: 2}), "map keys must be strings"),
    ],
)
def test_malformed_frames_are_refused_naming_the_key(frame, message):
    with pytest.raises(wire.WireError) as info:
        wire.unpack(frame, max_array_bytes=2**30)
    assert message in str(info.value)
