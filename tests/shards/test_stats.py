"""shards.stats: stats are numpy's over the (D, N) sidecar values, exactly; the sidecar is written
in chunk order under a temporary name; concatenating sidecars and recomputing is an exact merge."""

import hashlib

import numpy as np
import pytest

from shards.stats import (
    QUANTILES,
    compute_stats,
    file_sha256,
    load_stats_values,
    values_name,
    write_stats_values,
)


def _values(n=1001, dims=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dims)) * rng.uniform(0.1, 100, size=dims) + rng.uniform(-50, 50, size=dims)


def test_compute_stats_is_numpy():
    values = np.ascontiguousarray(_values().T)  # (D, N), as the sidecar stores them
    stats = compute_stats(values)
    assert stats["count"] == values.shape[1]
    for d, row in enumerate(values):
        assert stats["mean"][d] == row.mean() and stats["std"][d] == row.std()
        assert stats["min"][d] == row.min() and stats["max"][d] == row.max()
        assert stats["sum"][d] == row.sum() and stats["sum_sq"][d] == np.square(row).sum()
        for name, q in QUANTILES.items():
            assert stats[name][d] == np.quantile(row, q)
    np.testing.assert_allclose(stats["mean"], values.mean(axis=1), rtol=1e-13)
    assert all(isinstance(v, float) for key in ("mean", "q01") for v in stats[key])


def test_compute_stats_refuses_no_frames():
    with pytest.raises(ValueError, match="zero frames"):
        compute_stats(np.zeros((3, 0)))


def test_write_stats_values_from_chunks(tmp_path):
    rows = _values(n=100, dims=4)
    chunks = [rows[:30], rows[30:31], rows[31:]]
    entry = write_stats_values(
        tmp_path, "observation.state", chunks, 100, 4, episodes=[(2, 30), (5, 1), (9, 69)]
    )
    path = tmp_path / values_name("observation.state")
    assert entry.name == "stats/observation.state.npy" and path.is_file()
    assert entry.shape == (4, 100) and entry.dtype == "float64"
    assert entry.bytes == path.stat().st_size
    assert entry.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    assert entry.episodes == ((2, 30), (5, 1), (9, 69))
    assert entry.to_json()["episodes"] == [[2, 30], [5, 1], [9, 69]]
    values = load_stats_values(path)
    assert isinstance(values, np.memmap) and values.dtype == np.float64
    np.testing.assert_array_equal(values, rows.T)
    assert sorted(p.name for p in path.parent.iterdir()) == ["observation.state.npy"]


def test_write_stats_values_checks_counts(tmp_path):
    rows = _values(n=10, dims=3)
    with pytest.raises(ValueError, match="expected 11 frames, got 10"):
        write_stats_values(tmp_path, "action", [rows], 11, 3)
    with pytest.raises(ValueError, match=r"expected chunks of shape \(N, 4\)"):
        write_stats_values(tmp_path, "action", [rows], 10, 4)
    with pytest.raises(ValueError, match="add up to 9, expected 10"):
        write_stats_values(tmp_path, "action", [rows], 10, 3, episodes=[(0, 9)])
    assert write_stats_values(tmp_path, "action", [rows], 10, 3).episodes is None


def test_merge_by_concatenation_is_exact():
    """Stats of partitions merged = stats of the whole: concatenation in (episode, frame) order gives
    the identical sidecar, so identical numbers (not just within a tolerance)."""
    episodes = {e: _values(n=n, dims=6, seed=e) for e, n in [(0, 50), (1, 7), (2, 130), (3, 1), (4, 64)]}
    whole = np.concatenate([episodes[e] for e in sorted(episodes)]).T
    parts = [np.concatenate([episodes[e] for e in sorted(episodes)[k::3]]).T for k in range(3)]
    # re-order the parts' columns by episode, as merge does with the episodes index
    blocks = []
    for k, part in enumerate(parts):
        start = 0
        for e in sorted(episodes)[k::3]:
            n = len(episodes[e])
            blocks.append((e, part[:, start : start + n]))
            start += n
    merged = np.concatenate([b for _, b in sorted(blocks, key=lambda x: x[0])], axis=1)
    np.testing.assert_array_equal(merged, whole)
    assert compute_stats(merged) == compute_stats(whole)
    # in another column order the stats agree to rounding (quantiles, min, max exactly)
    shuffled = compute_stats(np.concatenate(parts, axis=1))
    for key in ("min", "max", "q01", "q99"):
        assert shuffled[key] == compute_stats(whole)[key]
    np.testing.assert_allclose(shuffled["mean"], compute_stats(whole)["mean"], rtol=1e-12)
