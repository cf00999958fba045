"""What `b1k-eval` writes: `report.json`, a table on stdout, a PNG of error vs episode progress.

`report.json` (numbers in dataset units; `mae`/`rmse` are null where a cell holds no value):

    {"split", "shards", "seed", "bins", "max_frames", "frames", "episodes", "execution",
     "checkpoints": [{"path", "label", "step", "chunk_size", "frames",
                      "overall": {"mae", "rmse"},
                      "by_group": {group: {"frames", "mae", "rmse"}},
                      "by_progress": [{"lo", "hi", "frames", "mae", "rmse", "by_group": {group: {"mae", "rmse"}}}],
                      "by_step": [{"step", "frames", "mae", "rmse"}],
                      "by_task": [{"task_index", "task", "frames", "mae", "rmse"}],
                      "executed": {"mode", "action_steps", "frames", "mae", "rmse", "by_group"}}],
     "baseline": {the same keys but path and step: "repeat the last recorded action"}}

It holds no timings, so the same command writes the same file.
"""

from __future__ import annotations

import json
from pathlib import Path

from schemas.r1pro import ACTION_SEGMENTS

REPORT_FILE = "report.json"
PLOT_FILE = "error_by_progress.png"


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
    """Three tables, one row per checkpoint plus the baseline: overall and executed; MAE per action
    group; MAE per episode-progress bin."""
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
    return "\n\n".join([head, summary, by_group, by_progress])


def _mode(executed: dict) -> str:
    if executed["mode"] == "receding":
        return f"receding {executed['action_steps']}"
    return executed["mode"]


def plot_progress(report: dict, path: Path) -> Path:
    """Error vs episode progress: a panel per action group (and one overall), a line per checkpoint,
    the baseline dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ["overall", *(s.name for s in ACTION_SEGMENTS)]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharex=True)
    for ax, panel in zip(axes.flat, panels, strict=False):
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
    for ax in axes[-1]:
        ax.set_xlabel("episode progress")
    for ax in axes[:, 0]:
        ax.set_ylabel("action MAE (dataset units)")
    legend_ax = axes.flat[len(panels)]
    legend_ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="center", fontsize=9)
    fig.suptitle(
        f"open-loop action error vs episode progress ({report['split']} split, {report['frames']} frames)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return path
