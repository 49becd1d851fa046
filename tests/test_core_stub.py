"""``_core.pyi`` describes exactly what the compiled module exports (names and members), so the
typed boundary cannot drift from the Rust wrappers."""

from __future__ import annotations

import ast
from pathlib import Path

import tickgate._core as core

STUB = Path(core.__file__).with_name("_core.pyi")
TYPE_ALIASES = {"FrameLike"}


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def test_top_level_names_match() -> None:
    declared = set()
    for node in stub_tree().body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
        elif isinstance(node, ast.Assign):
            declared.update(t.id for t in node.targets if isinstance(t, ast.Name))
    exported = {n for n in dir(core) if not n.startswith("_") or n == "__version__"}
    assert declared - TYPE_ALIASES == exported


def test_class_members_match() -> None:
    for node in stub_tree().body:
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(core, node.name)
        members = set()
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                members.add(item.name)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                members.add(item.target.id)
        for name in members:
            if name == "code":  # set on exception instances by the core
                continue
            assert hasattr(cls, name), f"{node.name}.{name} is in the stub but not in the module"
        public = {n for n in vars(cls) if not n.startswith("_")}
        assert public <= members, f"{node.name} exports {sorted(public - members)} missing from the stub"
