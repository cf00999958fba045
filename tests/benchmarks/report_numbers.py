"""Numbers read from results.json and how the report writes them: the formatters (`num`, `pct`, `best`),
ratios, and the two derived baselines the targets and the tables share (LeRobot's best loader, the
marginal per-frame cost of b1k-preprocess)."""

from __future__ import annotations

from typing import Any


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def num(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def best(r: dict, key: str) -> str:
    """The kept (best) value, with every round's value when there were several."""
    value = num(r.get(key))
    rounds = r.get("rounds") or []
    if len(rounds) > 1:
        value += " (" + ", ".join(num(v) for v in rounds) + ")"
    return value


def fmt_dict(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:,.0f}" for k, v in d.items())


def lookup(d: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def sps(res: dict, key: str) -> float | None:
    return lookup(res, key, "samples_per_s")


def lerobot_best(loader: dict, workers: int) -> tuple[float | None, str]:
    """The better of num_workers 0 and N with torchcodec (PyAV when torchcodec did not run)."""
    for backend in ("torchcodec", "pyav"):
        values = {w: sps(loader, f"lerobot_{backend}_w{w}") for w in sorted({0, workers})}
        values = {w: v for w, v in values.items() if v is not None}
        if values:
            w = max(values, key=values.get)
            return values[w], f"{backend}, num_workers={w}"
    return None, "not measured"


def marginal_preprocess(results: dict) -> dict:
    """Per-frame cost of b1k-preprocess without its fixed costs (interpreter start, imports, pool
    start, manifest): from the single-episode runs of length L and 4L (same options, 1 worker)."""
    mem = results.get("memory", {})
    short, long_ = mem.get("run_L"), mem.get("run_4L")
    if not short or not long_:
        return {}
    frames = long_["frames"] - short["frames"]
    cpu = long_["cpu_s"] - short["cpu_s"]
    wall = long_["wall_s"] - short["wall_s"]
    return {
        "frames": frames,
        "frames_per_cpu_s": frames / cpu if cpu > 0 else None,
        "frames_per_s": frames / wall if wall > 0 else None,
        "fixed_cpu_s": short["cpu_s"] - short["frames"] * (cpu / frames) if frames else None,
    }
