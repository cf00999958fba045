"""`make test-gpu`: the GPU tests (`pytest -m gpu`) and the GPU benchmarks in one go, with one summary.

    python -m tests.gpu.run [--out gpu-output] [--bench trainer]

Writes OUT/gpu-tests.xml (pytest's JUnit report), OUT/bench/ (the benchmark sections named by --bench,
`tests.benchmarks.run --only ...`; "" runs none) and OUT/summary.txt. Without a CUDA device the tests
are collected and skip, no benchmark runs, and the exit status is 1: nothing on the GPU was checked.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def run_tests(out: Path) -> tuple[int, list[tuple[str, str]]]:
    """pytest -m gpu; (exit status, [(test, passed/failed/skipped)])."""
    xml = out / "gpu-tests.xml"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA", f"--junitxml={xml}"]
    status = subprocess.run(command).returncode
    outcomes = []
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            kinds = {child.tag for child in case}
            outcome = (
                "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
            )
            outcomes.append((case.get("name", "?"), outcome))
    return status, outcomes


def run_bench(out: Path, sections: str) -> int:
    command = [sys.executable, "-m", "tests.benchmarks.run", "--only", sections, "--out", str(out / "bench")]
    return subprocess.run(command).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.gpu.run", description=__doc__)
    parser.add_argument("--out", default="gpu-output", help="output directory [gpu-output]")
    parser.add_argument("--bench", default="trainer", help="benchmark sections to run on the GPU [trainer]")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "no CUDA device"
    status, outcomes = run_tests(out)
    bench = run_bench(out, args.bench) if cuda and args.bench else None

    lines = [f"make test-gpu on {device} ({torch.cuda.device_count()} GPU(s), torch {torch.__version__})"]
    lines += [f"  {outcome:8} {name}" for name, outcome in outcomes]
    counts = {kind: sum(o == kind for _, o in outcomes) for kind in ("passed", "failed", "skipped")}
    lines.append(
        "tests: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()) + f" (pytest exit {status})"
    )
    if bench is None:
        lines.append("benchmarks: not run" + ("" if cuda else " (no CUDA device)"))
    else:
        lines.append(f"benchmarks ({args.bench}): exit {bench}, report {out / 'bench' / 'results.md'}")
    ok = cuda and status == 0 and counts["failed"] == 0 and counts["skipped"] == 0 and bench in (None, 0)
    lines.append("GPU checks: " + ("all passed" if ok else "NOT all passed"))
    text = "\n".join(lines)
    (out / "summary.txt").write_text(text + "\n")
    print("\n" + text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
