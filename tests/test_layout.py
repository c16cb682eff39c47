"""The package's shape: stage folders, small modules and functions, no private cross-stage imports."""

from __future__ import annotations

import ast
from pathlib import Path

import xglacier

ROOT = Path(xglacier.__file__).parent
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80
# private helper modules every stage shares (they hold public names only)
SHARED = {"_validate", "_attrs", "_atomic", "_windows", "_orient"}


def _modules() -> list[Path]:
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 40
    return files


def _dotted(path: Path) -> list[str]:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _stage(parts: list[str]) -> str:
    """``xglacier.<stage>...``: a folder, or a top-level module."""
    return parts[1] if len(parts) > 1 else "xglacier"


def _resolve(path: Path, node: ast.ImportFrom) -> list[str]:
    base = _dotted(path)
    if path.name != "__init__.py":
        base = base[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        return base + (node.module.split(".") if node.module else [])
    return node.module.split(".") if node.module else []


def test_no_private_name_imported_from_another_stage():
    bad = []
    for path in _modules():
        here = _stage(_dotted(path))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = _resolve(path, node)
            if not target or target[0] != "xglacier":
                continue
            there = _stage(target)
            if there == here or there in SHARED:
                continue
            private_module = any(p.startswith("_") for p in target[1:])
            private_names = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
            if private_module or private_names:
                bad.append(f"{path.relative_to(ROOT)}: from {'.'.join(target)} import "
                           f"{', '.join(a.name for a in node.names)}")
    assert not bad, "\n".join(bad)


def test_modules_are_small():
    big = {str(p.relative_to(ROOT)): n for p in _modules()
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not big, big


def _body_lines(node: ast.FunctionDef) -> int:
    body = node.body
    if isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the docstring does not count
    return 0 if not body else node.end_lineno - body[0].lineno + 1


def test_public_functions_are_short():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                if (n := _body_lines(node)) > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
    assert not long, long


def test_exceptions_and_warnings_live_in_errors():
    elsewhere = []
    for path in _modules():
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if any(b.endswith(("Error", "Warning", "Exception")) for b in bases):
                    elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not elsewhere, elsewhere


def test_typed_marker_ships():
    assert (ROOT / "py.typed").is_file()
