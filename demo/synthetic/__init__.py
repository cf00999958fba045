"""Synthetic BEHAVIOR (R1Pro) LeRobot datasets for tests and the demo: the builder and its command line.

One builder, four on-disk layouts and two releases (see shared/BEHAVIOR.md):

* ``v2.1`` -- the 2025 BEHAVIOR challenge release: one parquet and one mp4 per camera per episode,
  "chunk" folders named per task (``data/task-0006/episode_00060010.parquet``,
  ``videos/task-0006/observation.images.rgb.head/episode_00060010.mp4``), ``chunks_size`` 10000 so
  that ``episode_chunk = episode_index // 10000`` is the task id, episode indices
  ``task_id * 10000 + 10 * n``, ``meta/episodes.jsonl``, ``meta/tasks.jsonl`` (``task_index`` is the
  BEHAVIOR task id), ``meta/episodes_stats.jsonl``; ``timestamp`` is float64 as in the release.
  Written by :mod:`demo.synthetic.v21` (lerobot 0.6 cannot write v2.1).
* ``v3.0`` -- lerobot 0.6.1's own layout, written by lerobot's own ``LeRobotDataset`` writer
  (:mod:`demo.synthetic.v30`): several episodes per parquet file and per mp4 file,
  ``meta/episodes/chunk-000/file-000.parquet``, ``meta/tasks.parquet``, ``meta/stats.json``; episode
  indices ``0..N-1`` and dense task indices, as lerobot requires. ``episodes_per_data_file`` /
  ``episodes_per_video_file`` split episodes over several files (at different boundaries) so that
  readers are tested on file boundaries.
* ``published`` and ``per-task`` -- the 2026 release as published and its older per-task copies
  (:mod:`demo.synthetic.v30_2026`): task chunks, ``episode_index = 200 * task + demo``, the 2026
  camera keys as HEVC (GOP 8, no B-frames), ``meta/tasks.jsonl`` instructions, ``raw_episode_id``;
  meta describing all 100 tasks while only the built tasks' chunks exist (a partial download); a
  per-task copy numbers its episodes from 0 and its one task 0.

Every layout gets skill annotations (``annotations/task-NNNN/episode_*.json``) with the real files'
quirks (:mod:`demo.synthetic.annotations`); :meth:`SyntheticDatasetInfo.expected_skill` and
:meth:`SyntheticDatasetInfo.skill_quirks` say what a reader should find.

The 2025 layouts carry the three RGB cameras as AV1 mp4 (libsvtav1, yuv420p, 30 fps, lerobot's
default encoder settings), a depth video ``observation.images.depth.head`` (12-bit HEVC as
lerobot's depth encoder writes it) that readers must ignore, ``observation.cam_rel_poses`` (and in
v2.1 ``observation.task_info``), a float32 state and a 23-dim float32 action. The ``release`` picks
the state: ``2025`` the 256-dim R1Pro layout (``schemas.r1pro.LAYOUT_2025``), ``2026`` the 61-dim
one (``LAYOUT_2026``, ``names`` null in info.json); the 2026 release's ``v3.0`` is lerobot's writer
with the 61-dim state but the 2025 keys and AV1 (not the release as published).

Pixels, state and actions carry alignment codes of (episode, frame), so tests can prove that they
went together (:mod:`demo.synthetic.codes`); the episode in the codes is
:attr:`SyntheticEpisode.code_index` (the release-wide ``200 * task + demo`` in the 2026 layouts, even
in a per-task copy; else the episode index). The episodes, their indices and tasks are planned
by :mod:`demo.synthetic.plan`; the videos' encoder settings and frames are in
:mod:`demo.synthetic.video`.

Deterministic given the config (the seed picks the texture and tints); parquet/json files are
byte-for-byte reproducible, mp4 files decode to the same frames.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from demo.synthetic.annotations import (
    EpisodeAnnotation,
    SkillQuirks,
    annotation_path,
    plan_annotations,
    write_annotations,
)
from demo.synthetic.codes import (
    FrameCode,
    code_dims,
    decode_frame_code,
    decode_frame_id,
    decode_state_id,
    expected_action,
    expected_actions,
    expected_state,
    expected_states,
    render_frame,
)
from demo.synthetic.plan import (
    CAMERA_CODES,
    DEFAULT_LENGTHS,
    DEFAULT_TASKS,
    DEPTH_KEY,
    LAYOUTS,
    RELEASES,
    RGB_KEYS,
    RGB_KEYS_2026,
    SyntheticConfig,
    SyntheticDatasetInfo,
    SyntheticEpisode,
    plan_episodes,
)
from demo.synthetic.v21 import write_v21
from demo.synthetic.v30 import write_v30
from demo.synthetic.v30_2026 import write_v30_2026
from demo.synthetic.video import depth_keys, quiet_libav
from schemas.r1pro import FPS
from shards.command import Exits, command


def build_dataset(
    root: Path | str, config: SyntheticConfig | None = None, *, overwrite: bool = False
) -> SyntheticDatasetInfo:
    """Write a synthetic BEHAVIOR dataset under `root` (created; must be empty unless `overwrite`)."""
    config = config or SyntheticConfig()
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(root)
    episodes = plan_episodes(config)
    if config.published:  # meta/episodes names every episode's annotation file, written or not
        for ep in episodes:
            ep.annotation_file = annotation_path(ep)
    annotations = plan_annotations(episodes) if config.annotations else {}
    with quiet_libav():
        if config.layout == "v3.0":
            if root.exists():
                root.rmdir()  # empty: lerobot creates the root itself
            write_v30(root, config, episodes)
        else:
            root.mkdir(parents=True, exist_ok=True)
            writer = write_v21 if config.layout == "v2.1" else write_v30_2026
            writer(root, config, episodes)
    write_annotations(root, episodes, annotations)
    tasks = {}
    for ep in episodes:
        tasks.setdefault(ep.task_index, ep.task)
    return SyntheticDatasetInfo(
        root=root,
        layout=config.layout,
        fps=config.fps,
        episodes=episodes,
        camera_sizes=config.camera_sizes(),
        depth_keys=depth_keys(config),
        tasks=dict(sorted(tasks.items())),
        config=config,
        annotations=annotations,
    )


def _int_list(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        items = tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from err
    if not items:
        raise click.BadParameter("expected at least one integer")
    return items


# "error: ..." and status 1 (options no synthetic dataset can have, an output folder not empty).
@command("b1k-synthetic-dataset", Exits(error=1), context_settings={"show_default": True})
@click.option(
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Dataset root to create (must be empty unless --overwrite).",
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default=None,
    show_default=False,
    help="On-disk layout [default: v3.0 for --release 2025, published for 2026]. 2025: v3.0 (lerobot's "
    "writer, several episodes per file) or v2.1 (the 2025 release: task-NNNN folders). 2026: published (the "
    "release as published: one dataset in task chunks, global episode indices 200*task+demo, HEVC, meta "
    "for all 100 tasks: a partial download) or per-task (an older b1k/<task>/ copy of one task, episodes "
    "from 0, its task 0); v3.0 is lerobot's writer with the 61-dim state but 2025 keys and AV1.",
)
@click.option(
    "--release",
    type=click.Choice(tuple(RELEASES)),
    default="2025",
    help="BEHAVIOR release to follow: 2025 (256-dim state, AV1) or 2026 (61-dim state, names null).",
)
@click.option(
    "--episodes",
    type=click.IntRange(min=1),
    default=None,
    help="Number of episodes [default: one per --lengths entry]; lengths and tasks are cycled.",
)
@click.option(
    "--lengths",
    callback=_int_list,
    default=",".join(map(str, DEFAULT_LENGTHS)),
    help="Episode lengths in frames (at --fps), comma-separated.",
)
@click.option(
    "--tasks",
    callback=_int_list,
    default=",".join(map(str, DEFAULT_TASKS)),
    help="Evaluator task id (0..99) of each episode, comma-separated, cycled (6 = hiding_Easter_eggs); "
    "2026: the task chunks built, e.g. 0,6,51.",
)
@click.option(
    "--head-size",
    type=click.IntRange(min=16),
    default=64,
    help="Head camera height and width in px (real data: 720).",
)
@click.option(
    "--wrist-size",
    type=click.IntRange(min=16),
    default=None,
    help="Wrist cameras height and width in px (real data: 480). [default: 48; 64 in the 2026 layouts, the "
    "smallest x265 encodes cleanly]",
)
@click.option(
    "--full-size",
    is_flag=True,
    help="Real BEHAVIOR camera sizes (head 720, wrists 480); overrides --head-size/--wrist-size.",
)
@click.option(
    "--depth/--no-depth",
    default=True,
    help="Also write a depth video (2025: observation.images.depth.head; 2026: "
    "observation.depth_linear.zed_link_camera_0) that readers must skip.",
)
@click.option(
    "--episodes-per-data-file",
    type=click.IntRange(min=0),
    default=0,
    help="v3.0 layouts: episodes per data parquet file, per task chunk in the published layout (0 = all in one).",
)
@click.option(
    "--episodes-per-video-file",
    type=click.IntRange(min=0),
    default=0,
    help="v3.0 layouts: episodes per mp4 file per camera, per task chunk in the published layout (0 = all in one).",
)
@click.option("--fps", type=click.IntRange(min=1), default=FPS, help="Frames per second.")
@click.option(
    "--crf",
    type=click.IntRange(min=0, max=63),
    default=30,
    help="AV1 / HEVC (2026; at most 51) CRF quality (lower = better, bigger).",
)
@click.option(
    "--gop",
    type=click.IntRange(min=0),
    default=0,
    help="Keyframe interval in frames (0 = the layout's: AV1 2 as lerobot, the 2026 release's HEVC 8).",
)
@click.option(
    "--annotations/--no-annotations",
    default=True,
    help="Write skill annotations (annotations/task-NNNN/episode_*.json with the real files' quirks).",
)
@click.option("--seed", type=int, default=0, help="Seed of the image texture and tints.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    help="v2.1 / 2026 layouts: encoding threads (0 = min(4, cores)); v3.0 encodes each camera on its own thread.",
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --output-dir.")
def main(
    output_dir,
    layout,
    release,
    episodes,
    lengths,
    tasks,
    head_size,
    wrist_size,
    full_size,
    depth,
    episodes_per_data_file,
    episodes_per_video_file,
    fps,
    crf,
    gop,
    annotations,
    seed,
    workers,
    overwrite,
):
    """Write a small but faithful synthetic BEHAVIOR (R1Pro) LeRobot dataset.

    R1Pro state of the 2025 (256 dims) or 2026 (61 dims) release, 23-dim action, three RGB cameras (AV1
    mp4; 2026: HEVC under the 2026 keys), a depth video, skill annotations, several tasks and episode
    lengths; pixels and state/action values encode (episode, frame) so that readers can be checked for
    alignment (see demo/synthetic/__init__.py).
    """
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only on the console
    if full_size:
        head_size, wrist_size = 720, 480
    config = SyntheticConfig(
        layout=layout or "",
        release=release,
        episodes=episodes,
        lengths=lengths,
        tasks=tasks,
        head_size=head_size,
        wrist_size=wrist_size or 0,
        depth=depth,
        seed=seed,
        fps=fps,
        episodes_per_data_file=episodes_per_data_file,
        episodes_per_video_file=episodes_per_video_file,
        crf=crf,
        gop=gop,
        annotations=annotations,
        workers=workers,
    )
    info = build_dataset(output_dir, config, overwrite=overwrite)
    click.echo(
        f"wrote {info.layout} dataset ({info.release} release, {info.state_layout.dim}-dim state) to {info.root}: "
        f"{len(info.episodes)} episodes "
        f"({', '.join(f'{e.episode_index}:{e.length}' for e in info.episodes)}), {info.total_frames} frames, "
        f"tasks {info.tasks}, cameras {', '.join(f'{k} {h}x{w}' for k, (h, w) in info.camera_sizes.items())}"
        + (f", depth {', '.join(info.depth_keys)}" if info.depth_keys else "")
        + (f", skill annotations (quirks {info.skill_quirks()})" if info.annotations else "")
    )


__all__ = [
    "CAMERA_CODES",
    "DEFAULT_LENGTHS",
    "DEFAULT_TASKS",
    "DEPTH_KEY",
    "RELEASES",
    "RGB_KEYS",
    "RGB_KEYS_2026",
    "EpisodeAnnotation",
    "FrameCode",
    "SkillQuirks",
    "SyntheticConfig",
    "SyntheticDatasetInfo",
    "SyntheticEpisode",
    "build_dataset",
    "code_dims",
    "decode_frame_code",
    "decode_frame_id",
    "decode_state_id",
    "expected_action",
    "expected_actions",
    "expected_state",
    "expected_states",
    "render_frame",
]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
