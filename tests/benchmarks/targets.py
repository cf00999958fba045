"""The issue's targets: each measured ratio in results.json against its goal, met or not."""

from __future__ import annotations

from tests.benchmarks.report_numbers import lerobot_best, lookup, marginal_preprocess, num, ratio, sps

TARGETS = {
    "loader_vs_lerobot_default": 5.0,
    "loader_vs_lerobot_224": 15.0,
    "loader_vs_floor": 0.8,
    "preprocess_vs_floor": 0.8,
    "preprocess_scaling": 1.8,
    "memory_growth": 1.10,
}


def _internal_ratio(run_n: dict, run_1: dict) -> float | None:
    """Frames/s ratio by b1k-preprocess's own elapsed time (after interpreter start and imports)."""
    return ratio(
        ratio(run_n.get("frames"), run_n.get("internal_s")),
        ratio(run_1.get("frames"), run_1.get("internal_s")),
    )


def _same_shards(pre: dict) -> str:
    """Whether every default-size run wrote byte-identical shards (determinism across --workers)."""
    digests = {
        key: r.get("shards_sha256")
        for key in ("run_w1_t1", "run_wn_t1", "run_w1", "run_wn")
        if (r := pre.get(key)) and r.get("shards_sha256")
    }
    if len(digests) < 2:
        return ""
    same = len(set(digests.values())) == 1
    return (
        f"; shards byte-identical across these runs: {'yes' if same else 'NO (' + ', '.join(digests) + ')'}"
    )


def targets(results: dict) -> list[dict]:
    out: list[dict] = []
    n = results.get("workers", 2)
    loader = results.get("loader", {})
    pre = results.get("preprocess", {})
    mem = results.get("memory", {})

    def add(
        name: str, measured: float | None, target: float, detail: str, higher_is_better: bool = True
    ) -> None:
        met = None if measured is None else (measured >= target if higher_is_better else measured <= target)
        out.append(
            {
                "target": name,
                "measured": measured,
                "goal": f"{'≥' if higher_is_better else '≤'} {target:g}",
                "met": met,
                "detail": detail,
            }
        )

    base, base_desc = lerobot_best(loader, n)
    backend = lookup(loader, "backend", "effective_default")
    note = "" if backend == "torchcodec" else " — torchcodec did not run: baseline is PyAV"
    for label, key, goal in (
        ("default image size", "default", "loader_vs_lerobot_default"),
        ("--image-size 224", "224", "loader_vs_lerobot_224"),
    ):
        ours = sps(loader, f"shards_{key}_w{n}")
        equal = sps(loader, f"lerobot_torchcodec_w{n}") or sps(loader, f"lerobot_pyav_w{n}")
        add(
            f"shard loader vs LeRobotDataset, {label} (num_workers={n})",
            ratio(ours, base),
            TARGETS[goal],
            f"{num(ours)} vs {num(base)} samples/s (LeRobot best: {base_desc}); "
            f"at equal num_workers={n}: x{num(ratio(ours, equal))}{note}",
        )
    for key in ("default", "224"):
        ours = sps(loader, f"shards_{key}_w{n}")
        floor = sps(loader, f"floor_{key}")
        per_worker = ours / n if ours is not None else None
        add(
            f"shard loader per worker vs bare JPEG-decode floor ({key})",
            ratio(per_worker, floor),
            TARGETS["loader_vs_floor"],
            f"{num(per_worker)} samples/s per worker ({n} workers) vs {num(floor)} (one process decoding the same JPEGs); "
            f"per CPU-second (all processes, robust to other load): x"
            f"{num(ratio(lookup(loader, f'shards_{key}_w{n}', 'samples_per_cpu_s'), lookup(loader, f'floor_{key}', 'samples_per_cpu_s')), 2)}"
            + (
                f"; with 1 worker: x{num(ratio(sps(loader, f'shards_{key}_w1'), floor), 2)}"
                if sps(loader, f"shards_{key}_w1")
                else ""
            ),
        )
    floor_cpu = lookup(pre, "floor_1thread", "frames_per_cpu_s")
    marginal = marginal_preprocess(results)
    # one core against the one-core floor (older results: the auto-thread run)
    w1 = pre.get("run_w1_t1") or pre.get("run_w1", {})
    w1_what = "--workers 1 --decoder-threads 1" if "run_w1_t1" in pre else "--workers 1"
    add(
        "preprocess per core vs its bare floor (steady state)",
        ratio(marginal.get("frames_per_cpu_s"), floor_cpu),
        TARGETS["preprocess_vs_floor"],
        f"{num(marginal.get('frames_per_cpu_s'))} frames per CPU-s (marginal, episodes L vs 4L, 1 decoder thread) "
        f"vs floor {num(floor_cpu)} (1 decoder thread); end to end incl. start-up, whole set, {w1_what}: "
        f"{num(w1.get('frames_per_cpu_s'))} (x{num(ratio(w1.get('frames_per_cpu_s'), floor_cpu), 2)})",
    )
    w1_t1, wn_t1 = pre.get("run_w1_t1"), pre.get("run_wn_t1")
    w1_auto, wn_auto = pre.get("run_w1"), pre.get("run_wn")
    if w1_t1 and wn_t1:
        end_to_end = ratio(wn_t1.get("frames_per_s"), w1_t1.get("frames_per_s"))
        add(
            f"preprocess scaling --workers {n} vs 1 (one core per worker: --decoder-threads 1)",
            end_to_end,
            TARGETS["preprocess_scaling"],
            f"end to end incl. start-up, best of {len(wn_t1.get('rounds', [1]))} rounds: "
            f"{num(w1_t1.get('frames_per_s'))} -> {num(wn_t1.get('frames_per_s'))} frames/s; "
            f"b1k-preprocess's own elapsed time: x{num(_internal_ratio(wn_t1, w1_t1), 2)}"
            + (
                f"; with auto decoder threads (one worker already uses every core): "
                f"x{num(ratio(wn_auto.get('frames_per_s'), w1_auto.get('frames_per_s')), 2)}"
                if w1_auto and wn_auto
                else ""
            )
            + _same_shards(pre),
        )
    elif w1_auto and wn_auto:  # results of an older harness: auto threads only
        internal = _internal_ratio(wn_auto, w1_auto)
        add(
            f"preprocess scaling --workers {n} vs 1",
            internal,
            TARGETS["preprocess_scaling"],
            f"b1k-preprocess's own elapsed time (after interpreter start): x{num(internal, 2)}; end to end "
            f"incl. start-up: {num(w1_auto.get('frames_per_s'))} -> {num(wn_auto.get('frames_per_s'))} frames/s "
            f"(x{num(ratio(wn_auto.get('frames_per_s'), w1_auto.get('frames_per_s')), 2)})",
        )
    short, long_ = mem.get("run_L"), mem.get("run_4L")
    if short and long_:
        # ru_maxrss (exact; --workers 1 runs in one process); the polled tree peak can miss short peaks
        growth = long_["maxrss_kb"] / short["maxrss_kb"]
        base = lookup(mem, "import_baseline", "maxrss_kb")
        above = ""
        if base:
            above = (
                f"; above the {base / 1024:.0f} MiB of its imports alone: {(short['maxrss_kb'] - base) / 1024:.0f}"
                f" -> {(long_['maxrss_kb'] - base) / 1024:.0f} MiB"
            )
        add(
            f"preprocess peak RSS, episode of 4L={mem.get('4L')} vs L={mem.get('L')} frames",
            growth,
            TARGETS["memory_growth"],
            f"peak RSS {short['maxrss_kb'] / 1024:.0f} -> {long_['maxrss_kb'] / 1024:.0f} MiB{above}",
            higher_is_better=False,
        )
    out.append(
        {
            "target": "GPU JPEG decode (torchvision.io.decode_jpeg on cuda) and real-size SmolVLA data-wait at batch 32",
            "measured": None,
            "goal": "only if a GPU is lent",
            "met": None,
            "detail": "not measured: no GPU in this session (out of scope here)",
        }
    )
    return out
