"""Turn results.json into the markdown table (and the issue's targets, met or not)."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "loader_vs_lerobot_default": 5.0,
    "loader_vs_lerobot_224": 15.0,
    "loader_vs_floor": 0.8,
    "preprocess_vs_floor": 0.8,
    "preprocess_scaling": 1.8,
    "memory_growth": 1.10,
}


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


def _get(d: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _sps(res: dict, key: str) -> float | None:
    return _get(res, key, "samples_per_s")


def lerobot_best(loader: dict, workers: int) -> tuple[float | None, str]:
    """The better of num_workers 0 and N with torchcodec (PyAV when torchcodec did not run)."""
    for backend in ("torchcodec", "pyav"):
        values = {w: _sps(loader, f"lerobot_{backend}_w{w}") for w in sorted({0, workers})}
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
    backend = _get(loader, "backend", "effective_default")
    note = "" if backend == "torchcodec" else " — torchcodec did not run: baseline is PyAV"
    for label, key, goal in (
        ("default image size", "default", "loader_vs_lerobot_default"),
        ("--image-size 224", "224", "loader_vs_lerobot_224"),
    ):
        ours = _sps(loader, f"shards_{key}_w{n}")
        equal = _sps(loader, f"lerobot_torchcodec_w{n}") or _sps(loader, f"lerobot_pyav_w{n}")
        add(
            f"shard loader vs LeRobotDataset, {label} (num_workers={n})",
            ratio(ours, base),
            TARGETS[goal],
            f"{num(ours)} vs {num(base)} samples/s (LeRobot best: {base_desc}); "
            f"at equal num_workers={n}: x{num(ratio(ours, equal))}{note}",
        )
    for key in ("default", "224"):
        ours = _sps(loader, f"shards_{key}_w{n}")
        floor = _sps(loader, f"floor_{key}")
        per_worker = ours / n if ours is not None else None
        add(
            f"shard loader per worker vs bare JPEG-decode floor ({key})",
            ratio(per_worker, floor),
            TARGETS["loader_vs_floor"],
            f"{num(per_worker)} samples/s per worker ({n} workers) vs {num(floor)} (one process decoding the same JPEGs); "
            f"per CPU-second (all processes, robust to other load): x"
            f"{num(ratio(_get(loader, f'shards_{key}_w{n}', 'samples_per_cpu_s'), _get(loader, f'floor_{key}', 'samples_per_cpu_s')), 2)}"
            + (
                f"; with 1 worker: x{num(ratio(_sps(loader, f'shards_{key}_w1'), floor), 2)}"
                if _sps(loader, f"shards_{key}_w1")
                else ""
            ),
        )
    floor_cpu = _get(pre, "floor_1thread", "frames_per_cpu_s")
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
        base = _get(mem, "import_baseline", "maxrss_kb")
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


def paced_lines(paced: dict, model: dict) -> list[str]:
    """The trainer's stream at a realistic GPU step time (tests.benchmarks.trainer_bench paced)."""
    if not paced:
        return []
    first = next(iter(paced.values()))
    lines = [
        f"## Trainer stream at a realistic GPU step ({first['step_s'] * 1000:.0f} ms per batch of "
        f"{first['batch_size']}: SmolVLA ~450 M, one H100, bf16)",
        "",
        "The consumer takes batches from b1k-train's stream (train.data, default workers) and sleeps the "
        "step time instead of running the model (derivation: `GPU_STEP_S` in tests/benchmarks/trainer_bench.py). "
        "Worker cores per GPU = samples/s needed / samples per worker CPU-second (free-running phase); "
        "the paced columns depend on what else ran on the machine.",
        "",
        "| shards | num_workers | needed samples/s | data-wait share | delivered while paced | worker cores used while paced "
        "| free-running samples/s | samples per worker CPU-s | worker cores per GPU | consumer CPU ms per batch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in paced.items():
        lines.append(
            f"| {label} | {r['num_workers']} | {num(r['samples_per_s_needed'])} | {pct(r['data_wait_share'])} | "
            f"{num(r['samples_per_s_paced'])} | {num(r['worker_cores_paced'], 2)} | {num(r['samples_per_s_free'])} | "
            f"{num(r['samples_per_worker_cpu_s'])} | {num(r['cores_per_gpu'], 2)} | "
            f"{num(1000 * r['main_cpu_s_per_sample'] * r['batch_size'])} |"
        )
    lines.append("")
    if model:
        estimate = model.get("gpu_estimate", {})
        lines += [
            f"SmolVLA on the SmolVLM2-500M architecture (random weights): {model['params'] / 1e6:.1f} M parameters "
            f"({model['trainable_params'] / 1e6:.1f} M trained); {model['flops_per_sample'] / 1e12:.2f} TFLOP per "
            f"sample per step (forward + backward); CPU step at batch {model['batch_size']}: "
            f"{num(model['cpu_step_s'])} s; H100 estimate at batch {estimate.get('batch_size')}: "
            f"{num(1000 * estimate.get('step_s', 0))} ms at {100 * estimate.get('assumed_mfu', 0):.0f}% of the bf16 peak; "
            f"lerobot's published H100 step scaled by FLOPs: {num(1000 * model.get('lerobot_h100_scaled_step_s', 0))} ms.",
            "",
        ]
    return lines


def _met(value: bool | None) -> str:
    return {True: "**met**", False: "**not met**", None: "n/a"}[value]


def markdown(results: dict) -> str:
    n = results.get("workers", 2)
    machine = results.get("machine", {})
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{results.get('command')}` (what `make bench` runs; profile `{_get(results, 'profile', 'name')}`), "
        f"{results.get('started')}, {results.get('total_seconds', 0):.0f} s."
        + "".join(
            f" The {section} section is from an earlier run in the same --out: `{run.get('command')}`, {run.get('started')}."
            for section, run in results.get("carried_over", {}).items()
        ),
        "",
        f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model', '?')}), no GPU; "
        f"load average at start {num(_get(machine, 'load_avg_start')[0] if machine.get('load_avg_start') else None, 2)}, "
        f"at end {num(_get(machine, 'load_avg_end')[0] if machine.get('load_avg_end') else None, 2)} "
        "(above the CPU count = other work shared the cores: absolute numbers are noisy, ratios are side by side). "
        f"torch {machine.get('torch')}, lerobot {machine.get('lerobot')}, torchcodec {machine.get('torchcodec')}, "
        f"PyAV {machine.get('av')}, Pillow {machine.get('pillow')} (libjpeg-turbo: {machine.get('libjpeg_turbo')}). "
        f"N = {n} workers.",
        "",
    ]
    ds = results.get("dataset")
    if ds:
        av1 = ds.get("av1_bytes_per_frame", {})
        jpeg = ds.get("jpeg_bytes_per_frame", {})
        lines += [
            "## Data",
            "",
            f"LeRobot v3.0 dataset written by lerobot's `LeRobotDataset.create/add_frame/save_episode` (default AV1: "
            f"libsvtav1, yuv420p): {len(ds['episode_lengths'])} episodes ({', '.join(map(str, ds['episode_lengths']))} "
            f"frames, {ds['frames']} in all), 30 fps, 256-dim state, 23-dim action, procedurally textured rooms "
            f"with a panning camera and moving textured objects.",
            "",
            f"| camera | native size | AV1 bytes/frame | JPEG q{ds.get('jpeg_quality')} bytes/frame (native size) | JPEG/AV1 |",
            "|---|---|---|---|---|",
        ]
        sizes = {"head": "720x720", "left_wrist": "480x480", "right_wrist": "480x480"}
        for cam, value in av1.items():
            lines.append(
                f"| {cam} | {sizes.get(cam, '?')} | {num(value, 0)} | {num(jpeg.get(cam), 0)} | "
                f"x{num(ratio(jpeg.get(cam), value))} |"
            )
        lines.append("")

    loader = results.get("loader", {})
    if loader:
        backend = loader.get("backend", {})
        base, base_desc = lerobot_best(loader, n)
        lines += [
            "## Loader: samples/s delivered as training batches (batch 8, chunk 50, 3 cameras)",
            "",
            f"lerobot's default video backend here: `{backend.get('lerobot_default')}`; torchcodec decodes: "
            f"{backend.get('torchcodec_decodes')}"
            + (f" ({backend.get('torchcodec_error')})" if backend.get("torchcodec_error") else "")
            + ".",
            "",
            "Each configuration ran in a fresh process, round-robin with the others; the best round is kept "
            "(all rounds in brackets). The consuming process runs torch with cores - num_workers threads, as "
            "b1k-train does on CPU.",
            "",
            "| loader | num_workers | samples/s | vs LeRobotDataset (best) | per worker vs JPEG floor "
            "| samples per CPU-s (all processes) | per CPU-s vs JPEG floor |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, value in loader.items():
            if not isinstance(value, dict) or key == "backend":
                continue
            if "error" in value:
                lines.append(f"| {key} | | failed: {value['error'][:120]} | | | | |")
                continue
            if key.startswith("lerobot_"):
                name = f"LeRobotDataset + DataLoader ({value.get('backend') or key.split('_')[1]})"
                per_worker = ""
            elif key.startswith("shards_"):
                label = key.split("_")[1]
                shapes = value.get("image_shapes", {})  # batch keys: the dataset's (older runs: short ones)
                shape = shapes.get("observation.images.rgb.head") or shapes.get("observation.images.head")
                name = f"shard stream, {label} size (head {max(shape) if shape else '?'} px; {value.get('loader')})"
                w = value.get("num_workers") or 1
                per_worker = f"x{num(ratio(value['samples_per_s'] / w, _sps(loader, 'floor_' + label)), 2)}"
            elif key.startswith(("floor_", "floorpil_", "floortv_")):
                decoder = (value.get("decoder") or "").removeprefix("shards.codec.")
                name = (
                    f"bare floor: decode the same JPEGs in a tight loop ({key.split('_')[1]} size; {decoder})"
                )
                per_worker = ""
            else:
                continue
            workers = value.get("num_workers", "1 process" if key.startswith("floor") else "")
            floor_key = "floor_" + key.split("_")[1] if key.startswith("shards_") else None
            per_cpu = (
                ratio(value.get("samples_per_cpu_s"), _get(loader, floor_key, "samples_per_cpu_s"))
                if floor_key
                else None
            )
            lines.append(
                f"| {name} | {workers} | {best(value, 'samples_per_s')} | x{num(ratio(value['samples_per_s'], base), 2)} "
                f"| {per_worker} | {num(value.get('samples_per_cpu_s'))} | {'' if per_cpu is None else 'x' + num(per_cpu, 2)} |"
            )
        lines += ["", f"LeRobotDataset best = {num(base)} samples/s ({base_desc}).", ""]

    pre = results.get("preprocess", {})
    if pre:
        floor = pre.get("floor_1thread", {})
        lines += [
            "## Preprocess",
            "",
            "Floor: one process decodes the same AV1 videos sequentially with PyAV, converts to RGB and resizes + "
            "JPEG-encodes with preprocess's own function (`preprocess.images.encode_rgb_jpeg`), same size and quality.",
            "",
            "| run | frames | wall s | frames/s | CPU s | frames per CPU-s | vs floor (per CPU-s) | peak RSS (largest process / tree) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, label in (
            ("floor_1thread", "floor, decoder 1 thread"),
            ("floor_auto", "floor, decoder threads auto (as preprocess)"),
            ("run_w1_t1", "b1k-preprocess --workers 1 --decoder-threads 1 (one core; scaling base)"),
            ("run_wn_t1", f"b1k-preprocess --workers {n} --decoder-threads 1 (one core per worker; scaling)"),
            ("run_w1", "b1k-preprocess --workers 1 (auto decoder threads; reference)"),
            ("run_wn", f"b1k-preprocess --workers {n} (auto decoder threads; reference)"),
            ("floor_224_1thread", "floor at --image-size 224, 1 thread"),
            ("run_224", f"b1k-preprocess --image-size 224 --workers {n}"),
        ):
            r = pre.get(key)
            if not r:
                continue
            base = floor if "224" not in key else pre.get("floor_224_1thread", {})
            rss = (
                f"{r['maxrss_kb'] / 1024:.0f} / {r['peak_tree_rss_kb'] / 1024:.0f} MiB"
                if "maxrss_kb" in r
                else ""
            )
            lines.append(
                f"| {label} | {r.get('frames')} | {num(r.get('wall_s'))} | {best(r, 'frames_per_s')} | "
                f"{num(r.get('cpu_s'))} | {num(r.get('frames_per_cpu_s'))} | "
                f"x{num(ratio(r.get('frames_per_cpu_s'), base.get('frames_per_cpu_s')), 2)} | {rss} |"
            )
        marginal = marginal_preprocess(results)
        if marginal:
            lines.append(
                f"| b1k-preprocess marginal (episode 4L minus episode L, --workers 1 --decoder-threads 1) | {marginal['frames']} | | "
                f"{num(marginal.get('frames_per_s'))} | | {num(marginal.get('frames_per_cpu_s'))} | "
                f"x{num(ratio(marginal.get('frames_per_cpu_s'), floor.get('frames_per_cpu_s')), 2)} | |"
            )
        if pre.get("run_w1_t1"):
            lines += [
                "",
                "frames/s: best of the rounds (all rounds in brackets). The scaling target compares the "
                "`--decoder-threads 1` runs (one core per worker); with the default auto threads a single worker's "
                "decoders already use every core, so those rows are for reference only.",
            ]
        stages = floor.get("stage_s")
        if stages:
            total = sum(stages.values())
            lines += [
                "",
                "Where the floor's time goes: "
                + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in stages.items())
                + ".",
            ]
        run = pre.get("run_wn") or pre.get("run_w1")
        ds_frames = (ds or {}).get("frames") or 1
        if run and ds:
            src = sum(ds.get("video_bytes", {}).values()) / ds_frames
            lines += [
                "",
                f"Bytes per frame (3 cameras): source AV1 video {num(src, 0)}; shards at the default size "
                f"{num(run.get('shard_bytes_per_sample'), 0)} (x{num(ratio(run.get('shard_bytes_per_sample'), src))})"
                + (
                    f"; shards at 224 {num(pre['run_224'].get('shard_bytes_per_sample'), 0)} "
                    f"(x{num(ratio(pre['run_224'].get('shard_bytes_per_sample'), src))})"
                    if pre.get("run_224")
                    else ""
                )
                + ". A shard sample also holds the state, the 50x23 action chunk and its json.",
            ]
        lines.append("")

    mem = results.get("memory", {})
    if mem.get("run_L") and mem.get("run_4L"):
        lines += [
            "## Memory (b1k-preprocess --workers 1 --decoder-threads 1, one episode)",
            "",
            "| episode length | peak RSS (ru_maxrss) | peak RSS, polled process tree | above the imports alone |",
            "|---|---|---|---|",
        ]
        base = _get(mem, "import_baseline", "maxrss_kb")
        for label in ("L", "4L"):
            r = mem[f"run_{label}"]
            extra = f"{(r['maxrss_kb'] - base) / 1024:.0f} MiB" if base else "n/a"
            lines.append(
                f"| {mem[label]} ({label}) | {r['maxrss_kb'] / 1024:.0f} MiB | "
                f"{r['peak_tree_rss_kb'] / 1024:.0f} MiB | {extra} |"
            )
        lines.append("")

    trainer = results.get("trainer", {})
    if trainer:
        lines += [
            "## Trainer overhead (b1k-train, tiny offline backbone, CPU)",
            "",
            "| shards | num_workers | steps | samples/s | data-wait share (steady) | first window |",
            "|---|---|---|---|---|---|",
        ]
        for label, r in trainer.items():
            if label == "paced":
                continue
            lines.append(
                f"| {label} | {r.get('workers')} | {r.get('steps')} | {num(r.get('samples_per_s'))} | "
                f"{pct(r.get('data_wait_share'))} | {pct(r.get('first_window_data_wait_share'))} |"
            )
        lines.append("")

    lines += paced_lines(trainer.get("paced", {}), results.get("model", {}))

    serve = results.get("serve", {})
    if serve:
        lines += [
            "## Serve overhead (b1k-serve, everything but the model, CPU; goal < 5 ms per step)",
            "",
            f"Checkpoint frames stored at {serve.get('stored_size')}; {serve.get('steps')} steps per input "
            "size, every step runs the model (--action-steps 1); p50 / p95 in ms.",
            "",
            "| evaluator input | server overhead | end-to-end overhead | model (tiny backbone) | round trip |",
            "|---|---|---|---|---|",
        ]
        for label in ("720/480", "224"):
            r = serve.get(label)
            if r:
                cells = [
                    f"{num(r[k]['p50'], 2)} / {num(r[k]['p95'], 2)}"
                    for k in ("server_overhead_ms", "end_to_end_overhead_ms", "model_ms", "round_trip_ms")
                ]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")

    lines += [
        "## Targets (issue 5)",
        "",
        "| target | goal | measured | status | detail |",
        "|---|---|---|---|---|",
    ]
    for t in results.get("targets", []):
        measured = t["measured"]
        lines.append(
            f"| {t['target']} | {t['goal']} | {'n/a' if measured is None else 'x' + num(measured, 2)} | "
            f"{_met(t['met'])} | {t['detail']} |"
        )
    errors = results.get("errors", [])
    if errors:
        lines += ["", "## Errors", ""] + [f"- {e['section']}: {e['error'][:500]}" for e in errors]
    lines.append("")
    return "\n".join(lines)
