"""The README and docs/ cannot rot: their commands exist, their flags exist, their links resolve, the CLI
reference is `--help`, and the README's quick start runs (on synthetic data, small sizes, a few steps).
`make demo` runs too, small.

* Every `b1k-*` command and flag in README.md and docs/*.md (code blocks and inline code; `torchrun -m
  train.cli` and `python -m <module>` forms too) is checked against the command's click definition, i.e.
  its `--help`. A bare flag in prose may also be the original script's or the BEHAVIOR evaluator's (one
  its command lines in the docs use).
* The original script's flags table (docs/migrating.md): where it says a flag kept its name, the command
  accepts the original `--x_y` spelling.
* docs/cli.md's generated reference equals what `python -m tests.readme_cli` generates from `--help`.
* Every relative link and image of README.md and docs/*.md names a file that exists, and an anchor
  (`#...`) a heading of the page it points to.
* The README stays short (at most README_MAX_LINES lines): the rest belongs in docs/.
* The quick-start block runs as written with HOME pointing at a temporary folder (its `~/...` paths land
  there; the dataset path is a link to the synthetic v3.0 fixture). Only these are changed for a CPU
  test: b1k-train's --max-steps/--batch-size are made small, it validates every 2 steps, and --vlm-model
  (a tiny local backbone) stands in for the unreachable lerobot/smolvla_base. Then the README's Python
  block loads the checkpoint with lerobot and runs select_action. The run is made once per session
  (`quickstart_run` in tests/conftest.py): tests/train/test_train.py's eight-workers test checks it too.
* `demo.run` prints the same real-data commands as the README's quick start.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import click
import pytest

from tests import readme_cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MIGRATING = DOCS / "migrating.md"
README_MAX_LINES = 300
MAKEFILE = ROOT / "Makefile"
BIN = Path(sys.executable).parent

# The original train_smolvla_lerobot.py's argparse options (docs/migrating.md's side-by-side table names them).
ORIGINAL_FLAGS = {
    "--dataset_path",
    "--repo_id",
    "--batch_size",
    "--max_steps",
    "--save_steps",
    "--lr",
    "--num_workers",
    "--chunk_size",
    "--pretrained_model",
    "--freeze_vision",
    "--filter_state",
    "--temporal_alpha",
    "--video_tolerance",
    "--output_dir",
    "--keep_last_n_checkpoints",
    "--device",
    "--gpu_id",
    "--wandb_project",
    "--wandb_disable",
    "-h",
    "--help",
}
# `python -m MODULE` / `torchrun -m MODULE` forms of our commands.
MODULES = {"train.cli": "b1k-train", "preprocess.cli": "b1k-preprocess", "shards.cli": "b1k-shards"}
# Words that look like commands but name the project.
NOT_COMMANDS = {"b1k-smolvla"}
# The BEHAVIOR evaluator's module: prose may name the flags its command lines in the docs use.
EVALUATOR_MODULE = "omnigibson.eval.eval"
SEPARATORS = {"&&", "||", "|", ";"}


# ----------------------------------------------------------------------------- parsing the README


def readme_text() -> str:
    return README.read_text()


def documents() -> dict[str, str]:
    """README.md and every docs/*.md by their path relative to the repository, generated parts left out."""
    paths = [README, *sorted(DOCS.glob("*.md"))]
    return {str(path.relative_to(ROOT)): without_generated(path.read_text()) for path in paths}


def without_generated(text: str) -> str:
    """A page minus the generated CLI reference (checked separately, by equality)."""
    if readme_cli.BEGIN not in text:
        return text
    return text.replace(readme_cli.current(text), "")


def code_blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, body, the line just before the opening fence) of each fenced code block."""
    blocks = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```\s*$", text, flags=re.M | re.S):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        blocks.append((match.group(1), match.group(2), before))
    return blocks


def inline_spans(text: str) -> list[str]:
    prose = re.sub(r"^```.*?^```\s*$", "", text, flags=re.M | re.S)
    return re.findall(r"`([^`\n]+)`", prose)


def shell_commands(body: str) -> list[list[str]]:
    """Each simple command of a shell snippet as tokens (continuations joined, comments dropped)."""
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        current: list[str] = []
        for token in tokens:
            if token in SEPARATORS:
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
        if current:
            commands.append(current)
    return commands


def quickstart_block() -> str:
    blocks = [
        body for lang, body, before in code_blocks(readme_text()) if before.startswith("<!-- quickstart:")
    ]
    assert len(blocks) == 1, "README.md must hold exactly one block marked <!-- quickstart: ... -->"
    return blocks[0]


def quickstart_python() -> str:
    blocks = [
        body
        for lang, body, before in code_blocks(readme_text())
        if before.startswith("<!-- quickstart-python:")
    ]
    assert len(blocks) == 1, "README.md must hold exactly one block marked <!-- quickstart-python: ... -->"
    return blocks[0]


# ----------------------------------------------------------------------------- the commands' options


@cache
def our_commands() -> dict[str, click.Command]:
    return readme_cli.commands()


def option_names(command: click.Command) -> set[str]:
    names = {"-h", "--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def resolve(tokens: list[str]) -> tuple[str, click.Command, list[str]] | None:
    """(display name, click command, its arguments) for a command line that runs one of ours."""
    head = Path(tokens[0]).name
    if head in ("torchrun", "python", "python3") and "-m" in tokens:
        module = tokens[tokens.index("-m") + 1]
        if module not in MODULES:
            return None
        head, args = MODULES[module], tokens[tokens.index("-m") + 2 :]
    elif re.fullmatch(r"b1k-[a-z-]+", head):  # not a file named after one (`b1k-eval.log`)
        args = tokens[1:]
    else:
        return None
    commands = our_commands()
    assert head in commands, (
        f"the docs run `{head}`, which is not one of the project's commands {sorted(commands)}"
    )
    command = commands[head]
    name = head
    if isinstance(command, click.Group):
        positional = [a for a in args if not a.startswith("-")]
        if positional:
            sub = positional[0]
            assert sub in command.commands, (
                f"the docs run `{head} {sub}`: no such subcommand ({sorted(command.commands)})"
            )
            command, name = command.commands[sub], f"{head} {sub}"
            args = args[args.index(sub) + 1 :]
    return name, command, args


def flags_of(args: list[str]) -> list[str]:
    return [
        a.split("=", 1)[0] for a in args if a.startswith("-") and a != "-" and not re.fullmatch(r"-?\d.*", a)
    ]


# ----------------------------------------------------------------------------- static checks


def test_cli_reference_matches_help():
    delta = readme_cli.diff()
    assert not delta, (
        "docs/cli.md differs from the commands' --help; run `python -m tests.readme_cli --write`\n" + delta
    )


def test_every_command_and_flag_in_the_readme_and_docs_exists():
    problems = []
    checked = 0
    for name, text in documents().items():
        found, checked_here = command_problems(text)
        problems += [f"{name}: {problem}" for problem in found]
        checked += checked_here
    assert checked > 50, f"only {checked} flags found: are the README and docs parsed right?"
    assert not problems, "\n".join(problems)


def command_problems(text: str) -> tuple[list[str], int]:
    """(what is wrong, how many flags were checked) for the commands and flags one page mentions."""
    problems = []
    checked = 0
    snippets = [body for lang, body, _ in code_blocks(text) if lang in ("bash", "sh", "")]
    snippets += [span for span in inline_spans(text) if re.match(r"(b1k-|torchrun|python -m)", span)]
    for snippet in snippets:
        for tokens in shell_commands(snippet):
            if (
                Path(tokens[0]).name == "python"
                and len(tokens) > 1
                and tokens[1].endswith("train_smolvla_lerobot.py")
            ):
                unknown = sorted(set(flags_of(tokens[2:])) - ORIGINAL_FLAGS)
                if unknown:
                    problems.append(f"`{shlex.join(tokens)}`: not flags of the original script: {unknown}")
                continue
            resolved = resolve(tokens)
            if resolved is None:
                continue
            name, command, args = resolved
            valid = option_names(command)
            for flag in flags_of(args):
                checked += 1
                if flag not in valid:
                    problems.append(f"`{name}` has no option {flag} (in `{shlex.join(tokens)}`)")
    # Bare flags in prose: an option of one of our commands, or one of the original script's.
    every = set().union(*(option_names(c) for c in all_commands()))
    for span in inline_spans(text):
        if re.fullmatch(r"--?[A-Za-z][\w-]*(?:[ =].*)?", span):
            flag = span.split()[0].split("=")[0]
            checked += 1
            if flag not in every and flag not in ORIGINAL_FLAGS and flag not in evaluator_flags():
                problems.append(f"`{span}`: {flag} is no option of any b1k-* command")
    # Every b1k-* word names a command.
    for word in sorted(set(re.findall(r"\bb1k-[a-z][a-z-]*[a-z]", text)) - NOT_COMMANDS):
        if word not in our_commands():
            problems.append(f"mentions `{word}`, which is not one of the project's commands")
    return problems, checked


@cache
def evaluator_flags() -> frozenset[str]:
    """The flags of the evaluator's command lines in the README and docs (`python -m omnigibson.eval.eval`)."""
    flags = set()
    for text in documents().values():
        for _, body, _ in code_blocks(text):
            for tokens in shell_commands(body):
                if EVALUATOR_MODULE in tokens:
                    flags.update(flags_of(tokens[tokens.index(EVALUATOR_MODULE) + 1 :]))
    return frozenset(flags)


def all_commands() -> list[click.Command]:
    out = []
    for command in our_commands().values():
        out.append(command)
        if isinstance(command, click.Group):
            out.extend(command.commands.values())
    return out


def test_make_targets_in_the_readme_and_docs_exist():
    targets = set(re.findall(r"^([\w-]+):", MAKEFILE.read_text(), flags=re.M))
    in_readme = set(re.findall(r"\bmake ([a-z][\w-]*)", without_generated(readme_text())))
    assert in_readme >= {"demo", "test", "setup", "clean"}
    mentioned = set().union(*(re.findall(r"\bmake ([a-z][\w-]*)", t) for t in documents().values()))
    assert "bench" in mentioned
    assert mentioned <= targets, (
        f"README or docs mention make targets the Makefile lacks: {sorted(mentioned - targets)}"
    )


def test_original_flags_table_both_spellings():
    """Rows `| `--x_y` | `b1k-cmd --x-y` ... |`: a flag that kept its name accepts the original spelling."""
    rows = re.findall(
        r"^\| `(--[a-z_]+)`[^|]*\| `(b1k-[a-z-]+) (--[a-z-]+)`", MIGRATING.read_text(), flags=re.M
    )
    assert len(rows) >= 12, rows
    for original, command_name, new in rows:
        command = our_commands()[command_name]
        names = option_names(command)
        assert new in names, f"{command_name} has no {new}"
        if original.replace("_", "-") == new:
            assert original in names, (
                f"docs/migrating.md says {command_name} keeps {original}, but it does not accept it"
            )


def test_inline_code_stays_on_one_line():
    """A `span` broken across lines pairs the wrong backticks, and the flag check above reads prose as code."""
    broken = [
        f"{name}: {line.strip()[:90]}"
        for name, text in documents().items()
        for line in re.sub(r"^```.*?^```\s*$", "", text, flags=re.M | re.S).splitlines()
        if line.count("`") % 2
    ]
    assert not broken, "inline code broken across lines:\n" + "\n".join(broken)


def test_the_readme_stays_short():
    lines = len(readme_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move reference material to docs/"
    )


# ----------------------------------------------------------------------------- links


# [text](target) and ![alt](target), with an optional "title"; the target has no spaces.
LINK = re.compile(r"!?\[[^\]]*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", flags=re.M)
EXPLICIT_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", flags=re.I)


def without_code(text: str) -> str:
    """Markdown minus fenced blocks and inline code, where a `[x](y)` or `# x` is no link or heading."""
    text = re.sub(r"^```.*?^```\s*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]+`", "", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (`_` and `-` kept), spaces -> `-`."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors a page defines: its headings' slugs (repeats get -1, -2, ...) and `<a id=...>`."""
    seen: dict[str, int] = {}
    out = set(EXPLICIT_ANCHOR.findall(text))
    for heading in HEADING.findall(re.sub(r"^```.*?^```\s*$", "", text, flags=re.M | re.S)):
        base = slug(heading)
        out.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return out


def link_problem(page: Path, target: str) -> str | None:
    """Why a relative link of `page` does not resolve, or None (URLs with a scheme are not followed)."""
    if re.match(r"[a-z][a-z0-9+.-]*:", target, flags=re.I):
        return None
    file, _, anchor = target.partition("#")
    path = (page.parent / file).resolve() if file else page
    if not path.exists():
        return f"{target}: no such file {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"
    if anchor and path.suffix == ".md" and anchor not in anchors(path.read_text()):
        return f"{target}: {path.name} has no heading or anchor #{anchor}"
    return None


def page_link_problems(page: Path) -> list[str]:
    found = (link_problem(page, target) for target in LINK.findall(without_code(page.read_text())))
    return [f"{page.relative_to(ROOT)}: {problem}" for problem in found if problem]


def test_links_in_the_readme_and_docs_resolve():
    pages = [README, *sorted(DOCS.glob("*.md"))]
    assert len(pages) > 5, "docs/ should hold the reference pages the README links to"
    problems = [problem for page in pages for problem in page_link_problems(page)]
    assert not problems, "\n".join(problems)


def test_a_broken_link_or_anchor_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## What `b1k-eval` reports, by segment\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#what-b1k-eval-reports-by-segment) [ok](#top) [web](https://x.org/y)\n"
        "[gone](docs/b.md) ![gone](docs/figures/c.png) [bad anchor](docs/a.md#nowhere)\n"
        "`[not a link](nowhere.md)`\n\n# Top\n"
    )
    problems = page_link_problems(page)
    assert len(problems) == 3, problems
    assert "docs/b.md" in problems[0] and "c.png" in problems[1] and "#nowhere" in problems[2]


def test_demo_prints_the_readme_quickstart():
    from demo.run import REAL_DATA_COMMANDS

    assert REAL_DATA_COMMANDS.strip() == quickstart_block().strip(), (
        "demo/run.py's REAL_DATA_COMMANDS and the README's quick-start block differ: keep them equal"
    )


# ----------------------------------------------------------------------------- running the quick start


# The b1k-train line's CPU-test sizes; the eight-workers test (tests/train/test_train.py) reads the same
# run, so it keeps the README's --num-workers 8 and validates twice.
QUICKSTART_SIZES = {"--max-steps": "4", "--batch-size": "2"}
QUICKSTART_EXTRA = ("--val-every", "2", "--val-batches", "2", "--no-progress", "--log-every", "1")


def small(tokens: list[str], backbone: Path) -> list[str]:
    """The quick-start command with CPU-test sizes (see the module docstring)."""
    if Path(tokens[0]).name != "b1k-train":
        return tokens
    out = list(tokens)
    for flag, value in QUICKSTART_SIZES.items():
        assert flag in out, f"the quick-start b1k-train line no longer sets {flag}; update this test"
        out[out.index(flag) + 1] = value
    assert "--pretrained-model" not in out and "--vlm-model" not in out
    return [*out, "--vlm-model", str(backbone), *QUICKSTART_EXTRA]


@dataclass
class QuickstartRun:
    """The README's quick start, run once per session (the `quickstart_run` fixture)."""

    home: Path  # HOME of the run: the block's ~/ paths are under it
    env: dict[str, str]
    cwd: Path
    done: dict[str, subprocess.CompletedProcess]  # by command: b1k-preprocess, b1k-shards verify, ...

    @property
    def shards(self) -> Path:
        return self.home / "shards" / "task-0006"

    @property
    def run_dir(self) -> Path:
        return self.home / "runs" / "smolvla-task-0006"


def run_quickstart(synthetic_v30, backbone: Path, tmp_path: Path) -> QuickstartRun:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore::UserWarning",
    }
    commands = shell_commands(quickstart_block())
    skipped = [c for c in commands if c[0] in ("make", "source")]
    assert [shlex.join(c) for c in skipped] == ["make setup", "source .venv/bin/activate"]
    runs = [c for c in commands if c[0] not in ("make", "source")]
    assert [c[0] for c in runs] == ["b1k-preprocess", "b1k-shards", "b1k-shards", "b1k-train"]

    dataset = runs[0][runs[0].index("--dataset-path") + 1]
    assert dataset.startswith("~/")
    link = home / dataset[2:]
    link.parent.mkdir(parents=True)
    link.symlink_to(synthetic_v30.root, target_is_directory=True)

    done = {}
    for tokens in runs:
        argv = [str(home / t[2:]) if t.startswith("~/") else t for t in small(tokens, backbone)]
        argv[0] = str(BIN / argv[0])
        proc = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (
            f"{shlex.join(tokens)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
        done[" ".join(tokens[:2]) if tokens[0] == "b1k-shards" else tokens[0]] = proc
    return QuickstartRun(home, env, tmp_path, done)


@pytest.mark.slow
def test_quickstart_runs_as_written(quickstart_run):
    assert sorted(quickstart_run.done) == [
        "b1k-preprocess",
        "b1k-shards inspect",
        "b1k-shards verify",
        "b1k-train",
    ]
    home = quickstart_run.home
    assert (quickstart_run.shards / "manifest.json").is_file()
    assert (home / "shards" / "task-0006-sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = quickstart_run.run_dir / "checkpoints" / "last" / "pretrained_model"
    assert (checkpoint / "config.json").is_file()

    # The README's Python block, as written, against that checkpoint and shard set.
    proc = subprocess.run(
        [sys.executable, "-c", quickstart_python()],
        env=quickstart_run.env,
        cwd=quickstart_run.cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch.Size([1, 23])" in proc.stdout, proc.stdout


# ----------------------------------------------------------------------------- the demo, small


@pytest.mark.slow
def test_demo_runs_small(tmp_path):
    out = tmp_path / "demo-output"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo.run",
            "--out",
            str(out),
            "--episodes",
            "3",
            "--steps",
            "3",
            "--batch-size",
            "4",
            "--num-workers",
            "2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"--- stdout\n{proc.stdout[-8000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    summary = (out / "summary.txt").read_text()
    assert "SmolVLAPolicy.from_pretrained + make_pre_post_processors" in summary
    assert "select_action -> 23-dim action in data units" in summary
    assert re.search(r"preprocess\s+[\d.]+ frames/s", summary)
    assert re.search(r"train\s+[\d.]+ samples/s", summary)
    assert re.search(r"loss\s+[\d.]+ \(steps? [\d-]+\) -> [\d.]+", summary)
    for name in (
        "dataset/meta/info.json",
        "shards/manifest.json",
        "contact-sheet.png",
        "select_action.json",
        "train/checkpoints/last/pretrained_model/config.json",
        "demo.log",
        ".b1k-demo",
    ):
        assert (out / name).exists(), name
    # A second run replaces the previous demo's folder; a foreign folder is refused.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "demo.run", "--out", str(foreign)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "was not made by the demo" in proc.stderr
    assert (foreign / "keep.txt").exists()
