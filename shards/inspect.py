"""`b1k-shards inspect`: what a shard set holds, in words and (with `--sheet`) in a picture.

`summarize(manifest)` reads only the manifest (so it is instant, also for a remote set):
schema version, creator, source, episodes and samples per split, tasks (with episodes and samples
per task and split, where the manifest records them), samples per annotated skill and split (where
the manifest records them; `count_skills` counts them from the samples' json for a set whose manifest
does not), cameras and their stored
sizes, state preset and names, horizon, alpha, bytes and bytes per frame, and the stats table.

`contact_sheet(shard_set, ...)` draws a few samples, one row each: the three camera images side
by side (each scaled to the same height), the state as bars and the action chunk as curves
(each dim scaled by the set's q01..q99, padded steps shaded), and a caption with the key, task,
progress and weight, so a person can see at a glance that the right frames and numbers went
together. Pillow only (ImageDraw); the tile boxes are returned so tests can check the pixels.
"""

from __future__ import annotations

import colorsys
import json
import textwrap
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from schemas.manifest import SPLITS, Manifest, ShardEntry, Source, Stats
from schemas.r1pro import ACTION_KEY, STATE_KEY
from schemas.sample import (
    ACTION_IS_PAD_MEMBER,
    ACTION_MEMBER,
    JSON_MEMBER,
    STATE_MEMBER,
    SampleJsonError,
    SampleMeta,
    image_member,
)
from shards.codec import check_image_size, decode_sample
from shards.reader import ShardSet
from shards.scan import ShardScan

STAT_COLUMNS = ("mean", "std", "min", "max", "q01", "q99")
RESAMPLE = Image.Resampling.BILINEAR


# ------------------------------------------------------------------ text summary
def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def compress_indices(indices: list[int]) -> str:
    """[158, 159, 160, 179] -> '158:161,179' (half-open ranges, the --state-indices syntax)."""
    parts, i = [], 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        parts.append(str(indices[i]) if j == i else f"{indices[i]}:{indices[j] + 1}")
        i = j + 1
    return ",".join(parts)


def summary_dict(manifest: Manifest) -> dict:
    """The numbers `inspect` prints, as a JSON-friendly dict."""
    splits = {}
    total_bytes = total_samples = 0
    for name, split in manifest.splits:
        samples = split.shard_samples
        size = sum(s.bytes for s in split.shards)
        total_bytes += size
        total_samples += samples
        splits[name] = {
            "episodes": len(split.episodes),
            "samples": samples,
            "shards": len(split.shards),
            "bytes": size,
            "frames": split.frames,
        }
    stats_bytes = sum(sidecar.bytes for sidecar in manifest.sidecars())
    return {
        "schema_version": manifest.schema_version,
        "created_by": manifest.created_by.to_json(),
        "source": manifest.source.to_json(),
        "partition": None if manifest.partition is None else manifest.partition.to_json(),
        "splits": splits,
        "tasks": {str(task): prompt for task, prompt in manifest.tasks.items()},
        "task_counts": task_counts(manifest),
        "skill_counts": skill_counts(manifest),
        "cameras": {name: camera.to_json() for name, camera in manifest.cameras.items()},
        "state": {
            "preset": manifest.state.preset,
            "dim": manifest.state.dim,
            "indices": compress_indices(list(manifest.state.indices)),
            "names": list(manifest.state.names),
        },
        "action_dim": manifest.action.dim,
        "horizon": manifest.horizon,
        "fps": manifest.fps,
        "frame_stride": manifest.frame_stride,
        "temporal": manifest.temporal.to_json(),
        "bytes": total_bytes,
        "stats_bytes": stats_bytes,
        "samples": total_samples,
        "bytes_per_frame": total_bytes / total_samples if total_samples else 0.0,
    }


def task_counts(manifest: Manifest) -> dict[str, dict[str, dict] | None]:
    """Per split: {task index: {"task", "episodes", "samples"}}, or None where the manifest does not
    record them (sets written before `splits.<split>.tasks` existed)."""
    out: dict[str, dict[str, dict] | None] = {}
    for name, split in manifest.splits:
        out[name] = (
            None
            if split.tasks is None
            else {
                str(task): {"task": manifest.tasks.get(task, "?"), **counts.to_json()}
                for task, counts in sorted(split.tasks.items())
            }
        )
    return out


def _task_lines(manifest: Manifest) -> list[str]:
    """The per-task table: episodes, samples and share of the split's samples, then the task string."""
    counts = task_counts(manifest)
    recorded = [split for split in SPLITS if counts[split] is not None]
    if not recorded:
        return ["per task    not recorded (a set written before b1k-preprocess counted samples per task)"]
    columns = "".join(f"{split + ' episodes':>16}{'samples':>10}{'share':>8}" for split in SPLITS)
    lines = [f"per task    {'task':>4}{columns}"]
    totals = {split: sum(c["samples"] for c in (counts[split] or {}).values()) for split in SPLITS}
    for task in sorted({t for split in recorded for t in counts[split]}, key=int):
        row = f"            {task:>4}"
        for split in SPLITS:
            if counts[split] is None:
                row += f"{'not recorded':>34}"
                continue
            cell = counts[split].get(task, {"episodes": 0, "samples": 0})
            share = cell["samples"] / totals[split] if totals[split] else 0.0
            row += f"{cell['episodes']:>16}{cell['samples']:>10}{share:>8.1%}"
        lines.append(f"{row}  {manifest.tasks.get(int(task), '?')}")
    return lines


NO_SKILL = "(none)"  # the samples no skill annotation covers (null `skill`, or no field in older sets)


def skill_counts(manifest: Manifest) -> dict[str, dict | None]:
    """Per split, samples per annotated skill as the manifest records them (`splits.<split>.skills`, which
    counts annotated samples only): {"source": "manifest", "skills": {skill: samples}, "unannotated": the
    split's other samples}; None where the manifest does not record them (sets written before skills)."""
    out: dict[str, dict | None] = {}
    for name, split in manifest.splits:
        if split.skills is None:
            out[name] = None
            continue
        skills = dict(split.skills)
        out[name] = {
            "source": "manifest",
            "skills": skills,
            "unannotated": split.shard_samples - sum(skills.values()),
        }
    return out


def _skill(data: object) -> str | None:
    """A sample json's skill; None when none covers the frame or the json is off the schema (which
    `b1k-shards verify` names)."""
    try:
        return SampleMeta.from_json(data).skill
    except SampleJsonError:
        return None


def count_skills(shard_set: ShardSet, split: str) -> dict:
    """Samples per skill of a split counted from its samples' json (every shard is read): the numbers
    `skill_counts` takes from the manifest, for a set whose manifest does not record them."""
    skills: dict[str, int] = {}
    unannotated = 0
    for entry in shard_set.manifest.shards(split):
        for raw in ShardScan(shard_set.url(entry.name), digest=False):
            skill = _skill(json.loads(bytes(raw[JSON_MEMBER])))
            if skill is not None:
                skills[skill] = skills.get(skill, 0) + 1
            else:  # null, absent (a set written before skills), or off the schema: not a skill
                unannotated += 1
    return {"source": "samples", "skills": dict(sorted(skills.items())), "unannotated": unannotated}


def _skill_lines(counts: dict[str, dict | None]) -> list[str]:
    """The per-skill table (samples and share of the split per skill, the most samples first, the
    unannotated last), saying where its numbers come from; `counts` as `skill_counts` gives them."""
    known = [split for split in SPLITS if counts[split] is not None]
    if not known:
        return ["per skill   not recorded in the manifest (a set written before b1k-preprocess read skills)"]
    sources = sorted({counts[split]["source"] for split in known})
    where = " and ".join(
        "from the manifest" if s == "manifest" else "counted from the samples" for s in sources
    )
    columns = "".join(f"{split + ' samples':>15}{'share':>8}" for split in SPLITS)
    lines = [f"per skill   {columns}  skill ({where})"]
    rows = {skill: 0 for split in known for skill in counts[split]["skills"]}
    for split in known:
        for skill, samples in counts[split]["skills"].items():
            rows[skill] += samples
    order = sorted(rows, key=lambda s: (-rows[s], s))
    for skill in [*order, None]:
        row = " " * 12
        for split in SPLITS:
            if counts[split] is None:
                row += f"{'not recorded':>23}"
                continue
            split_counts = counts[split]
            total = sum(split_counts["skills"].values()) + split_counts["unannotated"]
            samples = split_counts["unannotated"] if skill is None else split_counts["skills"].get(skill, 0)
            row += f"{samples:>15}{samples / total if total else 0.0:>8.1%}"
        lines.append(f"{row}  {_printable(skill) if skill is not None else NO_SKILL}")
    return lines


def _printable(text: str) -> str:
    """Data as printed: characters that are not printable (terminal control sequences in an annotation)
    as Python escapes, so a set cannot drive the terminal of whoever inspects it."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _stats_table(stats: Stats, key: str, names: tuple[str, ...]) -> list[str]:
    width = max([len(n) for n in names] + [len(key), 4])
    header = f"  {key:<{width + 5}}" + "".join(f"{c:>11}" for c in STAT_COLUMNS)
    lines = [header + f"   (count {stats.count})"]
    vectors = stats.normaliser()
    for d, name in enumerate(names):
        values = "".join(f"{vectors[c][d]:>11.4g}" for c in STAT_COLUMNS)
        lines.append(f"  {d:>3}  {name:<{width}}{values}")
    return lines


def summarize(
    manifest: Manifest, location: str = "", stats: bool = True, skills: dict[str, dict | None] | None = None
) -> str:
    """The readable summary `b1k-shards inspect` prints; `skills`: samples per skill per split counted
    from the samples (`count_skills`), for a set whose manifest does not record them."""
    info = summary_dict(manifest)
    lines = _origin_lines(manifest, info, location)
    lines.extend(_split_lines(info))
    lines.extend(_tasks_summary(manifest))
    lines.extend(_skill_lines(skills or skill_counts(manifest)))
    lines.extend(_camera_lines(manifest))
    lines.extend(_format_lines(manifest, info))
    if stats:
        lines.append("stats       (train split; q01/q99 exact)")
        lines.extend(_stats_table(manifest.stats.state, STATE_KEY, manifest.state.names))
        lines.extend(_stats_table(manifest.stats.action, ACTION_KEY, manifest.action.names))
    return "\n".join(lines)


def _origin_lines(manifest: Manifest, info: dict, location: str) -> list[str]:
    """Where the set comes from: the tool and command that wrote it, its source, merge and partition."""
    created = manifest.created_by
    source = manifest.source
    lines = [f"shard set   {location}" if location else "shard set"]
    lines.append(
        f"schema      v{info['schema_version']}; created by {created.tool or '?'} {created.version or ''} "
        f"at {created.time or '?'}"
    )
    if created.command:
        lines.append(f"command     {created.command}")
    if source.kind == "merged":
        lines.append(f"source      merged from {len(source.sets or ())} sets:")
        lines.extend(f"              {_source_line(s)}" for s in source.sets or ())
    else:
        lines.append(f"source      {_source_line(source)}")
    if manifest.merged_from:
        lines.append(
            f"merged from {len(manifest.merged_from)} inputs: {', '.join(m.location for m in manifest.merged_from)}"
        )
    part = manifest.partition
    if part is not None:
        lines.append(
            f"partition   {part.index}/{part.count} (merge all {part.count} with `b1k-shards merge`)"
        )
    return lines


def _split_lines(info: dict) -> list[str]:
    lines = []
    for split in SPLITS:
        s = info["splits"][split]
        frames = f", {s['frames']} source frames" if s.get("frames") is not None else ""
        lines.append(
            f"{split:<11} {s['episodes']} episodes, {s['samples']} samples{frames} in {s['shards']} shards "
            f"({_human_bytes(s['bytes'])})"
        )
    return lines


def _tasks_summary(manifest: Manifest) -> list[str]:
    tasks = {str(task): prompt for task, prompt in manifest.tasks.items()}
    line = f"tasks       {len(tasks)}: " + "; ".join(f"{k}: {v}" for k, v in list(tasks.items())[:8])
    if len(tasks) > 8:
        line += f"; ... ({len(tasks) - 8} more)"
    return [line, *_task_lines(manifest)]


def _camera_lines(manifest: Manifest) -> list[str]:
    lines = []
    for i, (name, camera) in enumerate(manifest.cameras.items()):
        quality = f" q{camera.quality}" if camera.quality is not None else ""
        native = ""
        if camera.source_height is not None and camera.source_width is not None:
            native = f" (source {camera.source_height}x{camera.source_width})"
        lines.append(
            f"{'cameras' if i == 0 else '':<11} {name:<12} {camera.height}x{camera.width} "
            f"{camera.encoding}{quality}{native}  <- {camera.video_key}"
        )
    return lines


def _format_lines(manifest: Manifest, info: dict) -> list[str]:
    """State, action, horizon, temporal weight and sizes."""
    state = info["state"]
    lines = [f"state       {state['preset']}, {state['dim']} dims, indices {state['indices']}"]
    lines.extend(_wrapped(", ".join(state["names"]), "            "))
    lines.extend(
        _wrapped(
            f"{info['action_dim']} dims: {', '.join(manifest.action.names)}",
            "action      ",
            "            ",
        )
    )
    seconds = info["horizon"] / info["fps"] if info["fps"] else float("nan")
    lines.append(
        f"horizon     {info['horizon']} frames ({seconds:.2f} s at {info['fps']:g} fps); frame stride {info['frame_stride']}"
    )
    temporal = manifest.temporal
    lines.append(
        f"temporal    alpha {temporal.alpha:g}; {temporal.formula or 'weight = 1 + alpha * progress**2'}"
    )
    lines.append(
        f"bytes       {_human_bytes(info['bytes'])} in shards ({info['bytes']} B) + {_human_bytes(info['stats_bytes'])} stats "
        f"sidecars; {_human_bytes(info['bytes_per_frame'])}/frame over {info['samples']} samples"
    )
    return lines


def _wrapped(text: str, first: str, rest: str | None = None, width: int = 110) -> list[str]:
    return textwrap.wrap(
        text, width=width, initial_indent=first, subsequent_indent=first if rest is None else rest
    )


def _source_line(source: Source) -> str:
    parts = [str(source.path or "?")]
    if source.codebase_version:
        parts.append(f"LeRobot {source.codebase_version}")
    if source.fingerprint:
        parts.append(f"fingerprint {source.fingerprint[:12]}")
    if source.robot_type:
        parts.append(f"robot {source.robot_type}")
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


# ------------------------------------------------------------------ contact sheet
@dataclass
class SheetLayout:
    """Where each sample's pieces are on the sheet: boxes are (left, top, right, bottom)."""

    size: tuple[int, int]
    rows: list[dict] = field(
        default_factory=list
    )  # {"key", "tiles": {camera: box}, "state": box, "action": box}


def choose_samples(
    shard_set: ShardSet, count: int = 4, split: str = "train", keys: list[str] | None = None
) -> list[dict]:
    """Decoded samples to show: `keys` if given (searched in the split's shards, in order), else
    `count` samples from shards spread over the split (the first sample of each chosen shard, or
    samples spread over a shard when there are fewer shards than samples wanted)."""
    shards = shard_set.manifest.shards(split)
    if not shards:
        raise ValueError(f"the {split} split of this set has no shards")
    if keys:
        return _find_keys(shard_set, shards, list(keys), split)
    total = sum(s.samples for s in shards)
    count = min(count, total)
    wanted: dict[int, set[int]] = {}
    if count <= len(shards):  # the first sample of shards spread over the split: reads little
        for i in range(count):
            wanted.setdefault(round(i * (len(shards) - 1) / max(count - 1, 1)), set()).add(0)
    else:  # samples spread evenly over the whole split
        starts = np.cumsum([0] + [s.samples for s in shards])
        for i in range(count):
            position = round(i * (total - 1) / max(count - 1, 1))
            index = int(np.searchsorted(starts, position, side="right") - 1)
            wanted.setdefault(index, set()).add(position - int(starts[index]))
    chosen: list[dict] = []
    for index, positions in wanted.items():
        last = max(positions)
        for position, raw in enumerate(ShardScan(shard_set.url(shards[index].name), digest=False)):
            if position in positions:
                chosen.append(_decode(raw, _image_sizes(shard_set.manifest)))
            if position >= last:
                break
    return chosen


def _image_sizes(manifest: Manifest) -> dict[str, tuple[int, int]]:
    """Each camera's member and stored size: images are checked against it before they are decoded
    (a header claiming 60000 x 60000 pixels is an error, not a 10 GB allocation)."""
    return {
        image_member(name, camera.encoding): (camera.height, camera.width)
        for name, camera in manifest.cameras.items()
    }


def _decode(raw: dict, sizes: dict[str, tuple[int, int]]) -> dict:
    """`decode_sample`, each image's header checked against its camera's size first; an error names
    the shard, the sample and the member."""
    for member, (height, width) in sizes.items():
        if member in raw:
            try:
                check_image_size(raw[member], height, width)
            except ValueError as exc:
                raise ValueError(
                    f"{raw.get('__url__')}: sample {raw.get('__key__')}: {member}: {exc}"
                ) from None
    return decode_sample(raw)


def _find_keys(
    shard_set: ShardSet, shards: tuple[ShardEntry, ...], keys: list[str], split: str
) -> list[dict]:
    wanted = set(keys)
    found: dict[str, dict] = {}
    for entry in shards:
        for raw in ShardScan(shard_set.url(entry.name), digest=False):
            if raw["__key__"] in wanted:
                found[raw["__key__"]] = _decode(raw, _image_sizes(shard_set.manifest))
                wanted.discard(raw["__key__"])
                if not wanted:
                    break
        if not wanted:
            break
    if wanted:
        raise ValueError(f"samples {sorted(wanted)} are not in the {split} split")
    return [found[k] for k in keys]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _colour(i: int, n: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((i / max(n, 1)) * 0.85, 0.75, 0.8)
    return int(r * 255), int(g * 255), int(b * 255)


def _scale(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    span = np.where(high - low > 1e-12, high - low, 1.0)
    return np.clip((values - low) / span, -0.1, 1.1)


def _draw_state(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], state: np.ndarray, stats: Stats
) -> None:
    left, top, right, bottom = box
    draw.rectangle(box, outline=(160, 160, 160))
    scaled = _scale(state.astype(np.float64), np.asarray(stats.q01), np.asarray(stats.q99))
    n = len(scaled)
    inner = (right - left - 4) / max(n, 1)
    base = bottom - 2 - 0.1 / 1.2 * (bottom - top - 4)
    for d, value in enumerate(scaled):
        x0 = left + 2 + d * inner
        y = bottom - 2 - (value + 0.1) / 1.2 * (bottom - top - 4)
        draw.rectangle((x0, min(y, base), x0 + max(inner - 1, 1), max(y, base)), fill=_colour(d, n))


def _draw_action(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    action: np.ndarray,
    is_pad: np.ndarray,
    stats: Stats,
) -> None:
    left, top, right, bottom = box
    horizon, dims = action.shape
    step = (right - left - 4) / max(horizon - 1, 1)
    if is_pad.any():
        first = int(np.argmax(is_pad))
        draw.rectangle(
            (left + 2 + (first - 0.5) * step, top + 1, right - 1, bottom - 1), fill=(225, 225, 225)
        )
    draw.rectangle(box, outline=(160, 160, 160))
    scaled = _scale(action.astype(np.float64), np.asarray(stats.q01), np.asarray(stats.q99))
    height = bottom - top - 4
    for d in range(dims):
        points = [
            (left + 2 + t * step, bottom - 2 - (scaled[t, d] + 0.1) / 1.2 * height) for t in range(horizon)
        ]
        if len(points) == 1:
            x, y = points[0]
            draw.ellipse((x - 1, y - 1, x + 1, y + 1), fill=_colour(d, dims))
        else:
            draw.line(points, fill=_colour(d, dims), width=1)


def _caption(sample: dict) -> str:
    """The line above a sample's row: its key and json (or what makes the json off the schema)."""
    key = sample.get("__key__", "?")
    try:
        meta = SampleMeta.from_json(sample.get(JSON_MEMBER))
    except SampleJsonError as exc:
        return f"{key}   {_printable(str(exc))}"
    text = (
        f"{key}   episode {meta.episode_index}   frame {meta.frame_index} of {meta.episode_length}   "
        f"progress {meta.progress:.3f}   weight {meta.weight:.3f}   task {meta.task_index}: {meta.task}"
    )
    if meta.skill_recorded:  # sets written before skills have no field
        text += f"   skill: {NO_SKILL if meta.skill is None else _printable(meta.skill)}"
    return text


def render_contact_sheet(
    manifest: Manifest, samples: list[dict], tile_height: int = 160
) -> tuple[Image.Image, SheetLayout]:
    """Draw `samples` (decoded) one per row; returns the image and where everything is."""
    cameras = list(manifest.cameras.items())
    members = [image_member(name, camera.encoding) for name, camera in cameras]
    widths = [max(1, round(camera.width * tile_height / camera.height)) for _, camera in cameras]
    gap, caption, margin = 6, 16, 8
    state_width, action_width = 200, 260
    row_height = caption + tile_height + gap
    width = margin * 2 + sum(widths) + gap * len(widths) + state_width + gap + action_width
    height = margin * 2 + 18 + row_height * len(samples)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    small, label = _font(11), _font(12)
    layout = SheetLayout(size=(width, height))
    x = margin
    for (name, camera), w in zip(cameras, widths, strict=True):
        draw.text((x, margin), f"{name} {camera.height}x{camera.width}", fill=(0, 0, 0), font=label)
        x += w + gap
    draw.text((x, margin), f"state ({manifest.state.dim}, q01..q99)", fill=(0, 0, 0), font=label)
    draw.text(
        (x + state_width + gap, margin),
        f"action chunk ({manifest.horizon} x {manifest.action.dim}, q01..q99; grey = pad)",
        fill=(0, 0, 0),
        font=label,
    )
    state_stats, action_stats = manifest.stats.state, manifest.stats.action
    for r, sample in enumerate(samples):
        top = margin + 18 + r * row_height
        draw.text((margin, top), _caption(sample), fill=(40, 40, 40), font=small)
        y = top + caption
        row: dict = {"key": sample.get("__key__"), "tiles": {}}
        x = margin
        for (name, _), member, w in zip(cameras, members, widths, strict=True):
            box = (x, y, x + w, y + tile_height)
            image = sample.get(member)
            if isinstance(image, np.ndarray):
                sheet.paste(Image.fromarray(image).resize((w, tile_height), RESAMPLE), (x, y))
            else:
                draw.rectangle(box, outline=(200, 0, 0))
                draw.text((x + 4, y + 4), f"no {member}", fill=(200, 0, 0), font=small)
            row["tiles"][name] = box
            x += w + gap
        row["state"] = (x, y, x + state_width, y + tile_height)
        state = sample.get(STATE_MEMBER)
        if isinstance(state, np.ndarray):
            _draw_state(draw, row["state"], state, state_stats)
        x += state_width + gap
        row["action"] = (x, y, x + action_width, y + tile_height)
        action, is_pad = sample.get(ACTION_MEMBER), sample.get(ACTION_IS_PAD_MEMBER)
        if isinstance(action, np.ndarray) and action.ndim == 2:
            pad = is_pad if isinstance(is_pad, np.ndarray) else np.zeros(len(action), bool)
            _draw_action(draw, row["action"], action, pad, action_stats)
        layout.rows.append(row)
    return sheet, layout


def contact_sheet(
    shard_set: ShardSet,
    path: str,
    *,
    count: int = 4,
    split: str = "train",
    keys: list[str] | None = None,
    tile_height: int = 160,
) -> SheetLayout:
    """Write the contact sheet PNG of a few samples of `shard_set` to `path`."""
    samples = choose_samples(shard_set, count, split, keys)
    sheet, layout = render_contact_sheet(shard_set.manifest, samples, tile_height)
    sheet.save(path, format="PNG")
    return layout
