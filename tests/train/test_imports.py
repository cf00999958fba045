"""train/ imports nothing from deploy/ (DESIGN.md, issue 27): the two meet through schemas/, shards/ and the
checkpoint format only; `--eval-every` runs b1k-eval as a program on a checkpoint."""

from __future__ import annotations

import ast
from pathlib import Path

import train

TRAIN_DIR = Path(train.__file__).parent
IMPORTERS = ("import_module", "__import__")  # importlib.import_module("deploy...") is an import too


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import in a module, at any depth (a lazy import inside a function
    included), and of every `import_module`/`__import__` call with a literal name."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in IMPORTERS and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def deploy_imports(directory: Path) -> list[str]:
    """`path:line: module` for every import of deploy/ in the .py files under `directory`."""
    hits = []
    for path in sorted(directory.rglob("*.py")):
        for line, module in _imported_modules(ast.parse(path.read_text(), filename=str(path))):
            if module == "deploy" or module.startswith("deploy."):
                hits.append(f"{path.relative_to(directory.parent)}:{line}: {module}")
    return hits


def test_no_module_under_train_imports_deploy_not_even_lazily():
    assert TRAIN_DIR.name == "train" and list(TRAIN_DIR.glob("*.py"))
    assert deploy_imports(TRAIN_DIR) == []


def test_the_scan_finds_top_level_lazy_and_importlib_imports(tmp_path):
    package = tmp_path / "train"
    package.mkdir()
    (package / "a.py").write_text("import deploy.eval\nfrom deploy import policy\n")
    (package / "b.py").write_text(
        "import importlib\n\ndef f():\n    from deploy.action_norm import X\n"
        "    return importlib.import_module('deploy.eval.cli')\n"
    )
    (package / "c.py").write_text("from deployment import x\nfrom . import deploy\nimport schemas\n")
    assert deploy_imports(package) == [
        "train/a.py:1: deploy.eval",
        "train/a.py:2: deploy",
        "train/b.py:4: deploy.action_norm",
        "train/b.py:5: deploy.eval.cli",
    ]
