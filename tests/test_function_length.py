"""Functions a reader follows in one pass (issue 27): no function of the product packages is longer
than about a screen. The demo world (demo/) is not the product and is left out."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "shards", "preprocess", "train", "deploy")
MAX_LINES = 60  # from `def` to the last line; a CLI's click decorators are not counted


def function_lengths(path: Path) -> list[tuple[str, int, int]]:
    """(qualified name, first line, lines) of every function and method in the file, nested ones too."""
    found: list[tuple[str, int, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((prefix + child.name, child.lineno, child.end_lineno - child.lineno + 1))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(ast.parse(path.read_text(), str(path)), "")
    return found


def test_no_function_of_the_product_packages_is_longer_than_a_screen():
    too_long = [
        f"{path.relative_to(ROOT)}:{line} {name} ({lines} lines)"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for name, line, lines in function_lengths(path)
        if lines > MAX_LINES
    ]
    assert not too_long, "split into named steps:\n" + "\n".join(too_long)
