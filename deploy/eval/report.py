"""What `b1k-eval` writes: `report.json`, a table on stdout, a PNG of error vs episode progress (and per
skill, where the frames carry skill annotations).

`report.json` (numbers in dataset units; `mae`/`rmse` are null where a cell holds no value):

    {"split", "shards", "seed", "bins", "max_frames", "frames", "episodes", "execution",
     "checkpoints": [{"path", "label", "step", "chunk_size", "frames",
                      "overall": {"mae", "rmse"},
                      "by_group": {group: {"frames", "mae", "rmse"}},
                      "by_progress": [{"lo", "hi", "frames", "mae", "rmse", "by_group": {group: {"mae", "rmse"}}}],
                      "by_step": [{"step", "frames", "mae", "rmse"}],
                      "by_task": [{"task_index", "task", "frames", "mae", "rmse"}],
                      "by_skill": [{"skill", "frames", "mae", "rmse"}],
                      "executed": {"mode", "action_steps", "frames", "mae", "rmse", "by_group"}}],
     "baseline": {the same keys but path and step: "repeat the last recorded action"}}

`by_skill` has a row per annotated skill (the sample json's `skill`), the most frames first, and last a
row with `"skill": null` for the frames no annotation covers (every frame, in a set written before skills);
the table and the plot call that row `(none)`.

It holds no timings, so the same command writes the same file.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas.r1pro import ACTION_SEGMENTS

REPORT_FILE = "report.json"
PLOT_FILE = "error_by_progress.png"
NO_SKILL = "(none)"  # how the table and the plot name the frames without a skill (null in report.json)


def write_report(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
    return path


def _rows(report: dict) -> list[dict]:
    return [*report["checkpoints"], report["baseline"]]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def format_table(report: dict) -> str:
    """Four tables: one row per checkpoint plus the baseline for overall and executed, MAE per action
    group and MAE per episode-progress bin; then one row per skill (`skill_table`)."""
    rows = _rows(report)
    summary = _table(
        ["checkpoint", "frames", "chunk", "MAE", "RMSE", "executed MAE", "executed RMSE", "mode"],
        [
            [
                r["label"],
                str(r["frames"]),
                str(r["chunk_size"]),
                _fmt(r["overall"]["mae"]),
                _fmt(r["overall"]["rmse"]),
                _fmt(r["executed"]["mae"]),
                _fmt(r["executed"]["rmse"]),
                _mode(r["executed"]),
            ]
            for r in rows
        ],
    )
    groups = [s.name for s in ACTION_SEGMENTS]
    by_group = _table(
        ["MAE by group", *groups],
        [[r["label"], *(_fmt(r["by_group"][g]["mae"]) for g in groups)] for r in rows],
    )
    bins = [f"{b['lo']:.0%}-{b['hi']:.0%}" for b in rows[0]["by_progress"]]
    by_progress = _table(
        ["MAE by progress", *bins], [[r["label"], *(_fmt(b["mae"]) for b in r["by_progress"])] for r in rows]
    )
    head = (
        f"{report['split']} split of {report['shards']}: {report['frames']} frames of {report['episodes']} "
        f"episodes, seed {report['seed']} (action error in dataset units; padded steps excluded)"
    )
    return "\n\n".join([head, summary, by_group, by_progress, skill_table(report)])


def skill_table(report: dict) -> str:
    """MAE per skill, a row per skill (frames, then a column per checkpoint and the baseline): skills
    are many and their names long, so they go down the page; a line instead when no frame has one."""
    rows = _rows(report)
    skills = rows[0]["by_skill"]
    if not any(s["skill"] is not None for s in skills):
        return "MAE by skill: no evaluated frame has a skill annotation"
    maes = [{s["skill"]: s["mae"] for s in r["by_skill"]} for r in rows]
    return _table(
        ["MAE by skill", "frames", *(r["label"] for r in rows)],
        [
            [skill_name(s["skill"]), str(s["frames"]), *(_fmt(m.get(s["skill"])) for m in maes)]
            for s in skills
        ],
    )


def skill_name(skill: str | None) -> str:
    """A skill as printed and plotted: `NO_SKILL` for None; characters that are not printable (terminal
    control sequences in a dataset's annotation) as Python escapes, so the data cannot drive the terminal."""
    if skill is None:
        return NO_SKILL
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in skill)


def _mode(executed: dict) -> str:
    if executed["mode"] == "receding":
        return f"receding {executed['action_steps']}"
    return executed["mode"]


def plot_progress(report: dict, path: Path) -> Path:
    """Error vs episode progress: a panel per action group (and one overall), a line per checkpoint,
    the baseline dashed; below them, where the frames carry skills, the error per skill (`_skill_panel`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skills = report["baseline"]["by_skill"]
    annotated = any(s["skill"] is not None for s in skills)
    bars = len(skills) * len(_rows(report))
    skill_height = 0.8 + 0.16 * bars + 0.1 * len(skills) if annotated else 0.0  # inches: bars stay legible
    fig = plt.figure(figsize=(16, 7 + skill_height))
    grid = fig.add_gridspec(
        3 if annotated else 2, 4, height_ratios=[3.5, 3.5, skill_height][: 3 if annotated else 2]
    )
    first = fig.add_subplot(grid[0, 0])
    axes = [first, *(fig.add_subplot(grid[i // 4, i % 4], sharex=first) for i in range(1, 8))]
    _progress_panels(axes, report)
    if annotated:
        _skill_panel(fig.add_subplot(grid[2, :]), report)
    fig.suptitle(
        f"open-loop action error vs episode progress ({report['split']} split, {report['frames']} frames)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return path


def _progress_panels(axes: list, report: dict) -> None:
    """The 2 x 4 grid: overall and each action group vs progress, the legend in the last cell."""
    panels = ["overall", *(s.name for s in ACTION_SEGMENTS)]
    for ax, panel in zip(axes, panels, strict=False):
        for r in _rows(report):
            bins = r["by_progress"]
            x = [(b["lo"] + b["hi"]) / 2 for b in bins]
            y = [b["mae"] if panel == "overall" else b["by_group"][panel]["mae"] for b in bins]
            y = [float("nan") if v is None else v for v in y]
            baseline = r is report["baseline"]
            ax.plot(
                x, y, "--" if baseline else "-o", color="grey" if baseline else None, label=r["label"], ms=3
            )
        ax.set_title(panel)
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes[4:7]:
        ax.set_xlabel("episode progress")
    for ax in (axes[0], axes[4]):
        ax.set_ylabel("action MAE (dataset units)")
    legend_ax = axes[len(panels)]
    legend_ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="center", fontsize=9)


def _skill_panel(ax, report: dict) -> None:
    """Open-loop MAE per skill as horizontal bars, a bar per checkpoint (the progress panels' colours)
    and the baseline grey; skills in the report's order (most frames first) from the top."""
    rows = _rows(report)
    skills = rows[0]["by_skill"]
    height = 0.8 / len(rows)
    for i, r in enumerate(rows):
        mae = {s["skill"]: s["mae"] for s in r["by_skill"]}
        y = [k + (i - (len(rows) - 1) / 2) * height for k in range(len(skills))]
        x = [float("nan") if mae.get(s["skill"]) is None else mae[s["skill"]] for s in skills]
        baseline = r is report["baseline"]
        ax.barh(y, x, height=height, color="grey" if baseline else f"C{i}", alpha=0.6 if baseline else 1.0)
    ax.set_yticks(range(len(skills)))
    ax.set_yticklabels([f"{skill_name(s['skill'])} ({s['frames']} frames)" for s in skills])
    ax.invert_yaxis()
    ax.set_xlabel("action MAE (dataset units)")
    ax.set_title("open-loop action error per skill")
    ax.grid(axis="x", alpha=0.3)
