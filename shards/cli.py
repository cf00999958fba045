"""`b1k-shards`: inspect, verify and merge shard sets, local or remote.

SET is a directory, a path to its manifest.json, an http(s):// URL prefix (the manifest is at
<prefix>/manifest.json), or a `pipe:` command template with {name} for the file name (e.g.
`pipe:aws s3 cp s3://bucket/set/{name} -`).

Exit status: 0 when all is well; 1 when `verify` finds problems or a command fails (the message
says what and where); 2 for a bad command line.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

import click

from shards.command import Exits, group
from shards.errors import ShardSetError
from shards.text import printable


def _echo(text: str, err: bool = False) -> None:
    """Print a line that may hold text from a set (task names, keys, json values), control characters
    escaped (`shards.text.printable`)."""
    click.echo(printable(text), err=err)


# "b1k-shards: error: ..." and status 1 for a set that cannot be read or a file operation refused
# (shards.command); `verify` exits 1 on the problems it reports, too.
@group("b1k-shards", Exits(error=1, named=True))
@click.version_option(package_name="b1k-smolvla", prog_name="b1k-shards")
def main() -> None:
    """Inspect, verify and merge WebDataset shard sets written by b1k-preprocess.

    SET: a directory, a manifest.json path, an http(s):// URL prefix, or a `pipe:` command
    template containing {name} (webdataset's pipe: form).
    """


@main.command("inspect")
@click.argument("set_location", metavar="SET")
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="OUT.png",
    help="Also write a contact sheet: a few samples' three camera images side by side with their "
    "state and action-chunk curves.",
)
@click.option(
    "--samples",
    "count",
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="How many samples the contact sheet shows.",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="KEY",
    help="Show these sample keys (e00000000_f000000) on the sheet instead; repeatable.",
)
@click.option(
    "--split",
    default="train",
    show_default=True,
    type=click.Choice(["train", "val"]),
    help="Split the sheet's samples come from.",
)
@click.option(
    "--tile-height",
    default=160,
    show_default=True,
    type=click.IntRange(16, 2048),
    metavar="PX",
    help="Height of each camera tile on the sheet.",
)
@click.option("--no-stats", is_flag=True, help="Leave out the per-dimension stats table.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect_command(set_location, sheet, count, keys, split, tile_height, no_stats, as_json) -> None:
    """Summarize SET: schema, source, episodes and samples per split, tasks, cameras, state, horizon,
    alpha, bytes, bytes/frame and the stats table (reads only the manifest unless --sheet)."""
    from shards.inspect import contact_sheet, summarize, summary_dict
    from shards.reader import open_shard_set

    shard_set = open_shard_set(set_location)
    if as_json:
        click.echo(json.dumps({"location": set_location, **summary_dict(shard_set.manifest)}, indent=2))
    else:
        _echo(summarize(shard_set.manifest, set_location, stats=not no_stats))
    if sheet:
        try:
            layout = contact_sheet(
                shard_set, sheet, count=count, split=split, keys=list(keys) or None, tile_height=tile_height
            )
        except (ValueError, ShardSetError) as exc:  # e.g. a --key the split does not hold
            raise ShardSetError(f"contact sheet: {exc}") from exc
        _echo(
            f"contact sheet: {sheet} ({layout.size[0]}x{layout.size[1]} px, "
            f"{len(layout.rows)} samples: {', '.join(r['key'] for r in layout.rows)})",
            err=as_json,
        )


@main.command("verify")
@click.argument("set_location", metavar="SET")
@click.option("--quick", is_flag=True, help="Check sizes and sha256 only (no tar parsing or decoding).")
@click.option(
    "--workers",
    default=min(8, os.cpu_count() or 1),
    show_default=True,
    type=click.IntRange(min=1),
    help="Shards checked at a time (threads).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also list the shards that are fine.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="Also write the full report as JSON to PATH ('-' for stdout).",
)
def verify_command(set_location, quick, workers, verbose, json_path) -> None:
    """Check every shard of SET against its manifest: exists, size, sha256, sample count, every sample
    has every schema-v1 member and decodes with the right shapes and dtypes; also .tar files not in
    the manifest and the stats sidecars. Exit 0 only if all is well; otherwise list each bad shard
    with what is wrong and exit 1."""
    from shards.verify import verify_set

    done = [0]
    show_progress = sys.stderr.isatty()

    def progress(_check) -> None:
        done[0] += 1
        if show_progress:
            click.echo(f"\rverified {done[0]} shards", err=True, nl=False)

    report = verify_set(set_location, quick=quick, workers=workers, progress=progress)
    if show_progress:
        click.echo("", err=True)
    lines = report.lines(verbose=verbose)
    if json_path:
        text = json.dumps(report.to_json(), indent=2)
        if json_path == "-":
            click.echo(text)
            for line in lines:
                _echo(line, err=True)
            sys.exit(0 if report.ok else 1)
        with open(json_path, "w") as f:
            f.write(text + "\n")
    _echo(f"verify {set_location} ({'quick' if quick else 'full'})")
    for line in lines:
        _echo(line)
    sys.exit(0 if report.ok else 1)


@main.command("merge")
@click.argument("out", type=click.Path(file_okay=False))
@click.argument("sets", nargs=-1, required=True, metavar="SET...")
@click.option("--overwrite", is_flag=True, help="Replace a shard set already in OUT.")
@click.option(
    "--link/--copy",
    default=True,
    show_default=True,
    help="Hardlink local shards when OUT is on the same filesystem (falls back to a checked copy), "
    "or always copy.",
)
@click.option(
    "--workers",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Shards transferred at a time (threads).",
)
def merge_command(out, sets, overwrite, link, workers) -> None:
    """Combine shard sets into one at OUT.

    Partition outputs of one preprocess (b1k-preprocess --partition K/N): all N must be given and
    come from the same run configuration; the result equals one run over all episodes (same
    samples, same stats; the shard layout differs). Sets of different tasks: combined into one
    multi-task set with stats recomputed from their stats sidecars; refused, naming the field,
    when their schema version, state preset/indices, horizon, cameras, action layout, fps, frame
    stride or temporal alpha differ. Shards get new names; the manifest is written last.
    """
    from shards.merge import merge_sets

    merge_sets(
        out,
        list(sets),
        overwrite=overwrite,
        link=link,
        workers=workers,
        command=shlex.join(["b1k-shards", *sys.argv[1:]]),
        log=lambda message: _echo(message, err=True),
    )


if __name__ == "__main__":
    main()
