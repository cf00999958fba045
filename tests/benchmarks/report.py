"""Turn results.json into the markdown of results.md: one table per section, then the issue's targets
(computed by `tests.benchmarks.targets`), met or not."""

from __future__ import annotations

from tests.benchmarks.report_numbers import (
    best,
    lerobot_best,
    lookup,
    marginal_preprocess,
    num,
    pct,
    ratio,
    sps,
)


def markdown(results: dict) -> str:
    lines = _header_lines(results)
    for part in (_data_lines, _loader_lines, _preprocess_lines, _memory_lines, _trainer_lines):
        lines += part(results)
    lines += paced_lines(results.get("trainer", {}).get("paced", {}), results.get("model", {}))
    lines += _serve_lines(results)
    lines += _targets_lines(results)
    lines.append("")
    return "\n".join(lines)


def _header_lines(results: dict) -> list[str]:
    """The title, the command that made the results and the machine it ran on."""
    n = results.get("workers", 2)
    machine = results.get("machine", {})
    lines = [
        "# Benchmark results",
        "",
        f"Command: `{results.get('command')}` (what `make bench` runs; profile `{lookup(results, 'profile', 'name')}`), "
        f"{results.get('started')}, {results.get('total_seconds', 0):.0f} s."
        + "".join(
            f" The {section} section is from an earlier run in the same --out: `{run.get('command')}`, {run.get('started')}."
            for section, run in results.get("carried_over", {}).items()
        ),
        "",
        f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model', '?')}), no GPU; "
        f"load average at start {num(lookup(machine, 'load_avg_start')[0] if machine.get('load_avg_start') else None, 2)}, "
        f"at end {num(lookup(machine, 'load_avg_end')[0] if machine.get('load_avg_end') else None, 2)} "
        "(above the CPU count = other work shared the cores: absolute numbers are noisy, ratios are side by side). "
        f"torch {machine.get('torch')}, lerobot {machine.get('lerobot')}, torchcodec {machine.get('torchcodec')}, "
        f"PyAV {machine.get('av')}, Pillow {machine.get('pillow')} (libjpeg-turbo: {machine.get('libjpeg_turbo')}). "
        f"N = {n} workers.",
        "",
    ]
    return lines


def _data_lines(results: dict) -> list[str]:
    """## Data: the built dataset, and its bytes per frame as AV1 and as JPEG."""
    ds = results.get("dataset")
    if not ds:
        return []
    av1 = ds.get("av1_bytes_per_frame", {})
    jpeg = ds.get("jpeg_bytes_per_frame", {})
    lines = [
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
    return lines


def _loader_lines(results: dict) -> list[str]:
    """## Loader: samples/s of every loader configuration, against LeRobotDataset and the JPEG floor."""
    n = results.get("workers", 2)
    loader = results.get("loader", {})
    if not loader:
        return []
    backend = loader.get("backend", {})
    base, base_desc = lerobot_best(loader, n)
    lines = [
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
            name = (
                f"shard stream, {label} size (head {max(shape) if shape else '?'} px; {value.get('loader')})"
            )
            w = value.get("num_workers") or 1
            per_worker = f"x{num(ratio(value['samples_per_s'] / w, sps(loader, 'floor_' + label)), 2)}"
        elif key.startswith(("floor_", "floorpil_", "floortv_")):
            decoder = (value.get("decoder") or "").removeprefix("shards.codec.")
            name = f"bare floor: decode the same JPEGs in a tight loop ({key.split('_')[1]} size; {decoder})"
            per_worker = ""
        else:
            continue
        workers = value.get("num_workers", "1 process" if key.startswith("floor") else "")
        floor_key = "floor_" + key.split("_")[1] if key.startswith("shards_") else None
        per_cpu = (
            ratio(value.get("samples_per_cpu_s"), lookup(loader, floor_key, "samples_per_cpu_s"))
            if floor_key
            else None
        )
        lines.append(
            f"| {name} | {workers} | {best(value, 'samples_per_s')} | x{num(ratio(value['samples_per_s'], base), 2)} "
            f"| {per_worker} | {num(value.get('samples_per_cpu_s'))} | {'' if per_cpu is None else 'x' + num(per_cpu, 2)} |"
        )
    lines += ["", f"LeRobotDataset best = {num(base)} samples/s ({base_desc}).", ""]
    return lines


def _preprocess_lines(results: dict) -> list[str]:
    """## Preprocess: frames/s and CPU of every b1k-preprocess run, against its bare floor."""
    n = results.get("workers", 2)
    ds = results.get("dataset")
    pre = results.get("preprocess", {})
    if not pre:
        return []
    floor = pre.get("floor_1thread", {})
    lines = [
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
    return lines


def _memory_lines(results: dict) -> list[str]:
    """## Memory: b1k-preprocess's peak RSS on an episode of length L and 4L."""
    mem = results.get("memory", {})
    if not (mem.get("run_L") and mem.get("run_4L")):
        return []
    lines = [
        "## Memory (b1k-preprocess --workers 1 --decoder-threads 1, one episode)",
        "",
        "| episode length | peak RSS (ru_maxrss) | peak RSS, polled process tree | above the imports alone |",
        "|---|---|---|---|",
    ]
    base = lookup(mem, "import_baseline", "maxrss_kb")
    for label in ("L", "4L"):
        r = mem[f"run_{label}"]
        extra = f"{(r['maxrss_kb'] - base) / 1024:.0f} MiB" if base else "n/a"
        lines.append(
            f"| {mem[label]} ({label}) | {r['maxrss_kb'] / 1024:.0f} MiB | "
            f"{r['peak_tree_rss_kb'] / 1024:.0f} MiB | {extra} |"
        )
    lines.append("")
    return lines


def _trainer_lines(results: dict) -> list[str]:
    """## Trainer overhead: b1k-train's samples/s and data-wait share."""
    trainer = results.get("trainer", {})
    if not trainer:
        return []
    lines = [
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
    return lines


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


def _serve_lines(results: dict) -> list[str]:
    """## Serve overhead: b1k-serve's time per step, everything but the model."""
    serve = results.get("serve", {})
    if not serve:
        return []
    lines = [
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
    return lines + _serve_load_lines(serve)


def _serve_load_lines(serve: dict) -> list[str]:
    """## Serve: start-up, many environments on one model, fairness."""
    lines = []
    healthy = serve.get("start_to_healthy", {})
    if healthy:
        lines += ["## Serve: start to healthy (b1k-serve process, CPU; best of its repeats)", ""]
        lines += ["| model | listening (/healthz 503) | healthy (/healthz 200) |", "|---|---|---|"]
        lines += [
            f"| {k} | {num(v['listening_s'], 2)} s | {num(v['healthy_s'], 2)} s |" for k, v in healthy.items()
        ]
        lines.append("")
    for model, measured in serve.get("concurrent", {}).items():
        lines += [
            f"## Serve: N clients on one model ({model}, CPU; requests/s, each runs the model for one environment)",
            "",
            "| N | one at a time | batched across connections | mean environments per call | ratio |",
            "|---|---|---|---|---|",
        ]
        for n, row in measured.get("clients", {}).items():
            one, batched = row["one_at_a_time"], row["batched"]
            lines.append(
                f"| {n} | {num(one['requests_per_s'], 2)} | {num(batched['requests_per_s'], 2)} | "
                f"{num(batched['mean_rows'], 1)} | x{num(row['ratio'], 2)} |"
            )
        lines.append("")
    fair = serve.get("fairness")
    if fair:
        lines += [
            f"Fairness: an honest client's step (1 environment, 224) takes {num(fair['alone_ms'], 1)} ms alone and "
            f"{num(fair['beside_ms'], 1)} ms (x{num(fair['factor'], 2)}) beside a client sending "
            f"{fair['hostile_request']}, the largest request the defaults allow (medians of {fair['steps']} steps).",
            "",
        ]
    return lines


def _met(value: bool | None) -> str:
    return {True: "**met**", False: "**not met**", None: "n/a"}[value]


def _targets_lines(results: dict) -> list[str]:
    """## Targets (met or not), then ## Errors when a section failed."""
    lines = [
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
    return lines
