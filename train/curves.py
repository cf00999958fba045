"""A run's curves as one PNG in the run directory (`curves.png`), drawn from `train_log.jsonl`, so that
nobody has to plot JSONL by hand: loss (weighted and plain) with the validation loss, learning rate,
share of step time spent waiting for data, and the action error of `--eval-every` (with its baseline)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

CURVES_FILE = "curves.png"


def read_log(path: Path) -> dict[str, list[dict]]:
    """The log's records by kind (`train`, `val`, `eval`), in step order."""
    kinds: dict[str, list[dict]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            kinds.setdefault(record.get("kind", "train"), []).append(record)
    return {kind: sorted(records, key=lambda r: r["step"]) for kind, records in kinds.items()}


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(log_path: Path, out: Path) -> Path | None:
    """Write the PNG; None (and nothing written) when the log holds no training record yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = read_log(log_path) if Path(log_path).is_file() else {}
    train, val, evals = kinds.get("train", []), kinds.get("val", []), kinds.get("eval", [])
    if not train:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(12, 7))
    loss, lr, wait, action = axes.flat
    for key, style, label in (("weighted_loss", "-", "train (weighted)"), ("loss", "-", "train")):
        loss.plot(*_series(train, key), style, label=label, lw=1)
    for key, label in (("val_weighted_loss", "val (weighted)"), ("val_loss", "val")):
        loss.plot(*_series(val, key), "o-", label=label, ms=3)
    loss.set(title="flow-matching loss", yscale="log")
    lr.plot(*_series(train, "lr"))
    lr.set(title="learning rate")
    wait.plot(*_series(train, "data_wait_share"))
    wait.set(title="share of step time waiting for data", ylim=(0, 1))
    for key, style, label in (
        ("action_mae", "o-", "open-loop chunk"),
        ("executed_mae", "s-", "executed"),
        ("baseline_mae", "--", "baseline: repeat last action"),
    ):
        action.plot(*_series(evals, key), style, label=label, ms=3)
    action.set(title="val action MAE (dataset units, --eval-every)")
    if not evals:
        action.text(0.5, 0.5, "no --eval-every", ha="center", va="center", transform=action.transAxes)
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(str(Path(log_path).parent.name))
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
