"""docs/reliability.md names the tests that check each case: every name it gives must exist."""
from __future__ import annotations

import ast
import re

from conftest import REPO


def test_every_test_named_in_reliability_md_exists():
    text = (REPO / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(?:[\w]+\.py::)?(test_\w+)", text))
    defined = {node.name for path in (REPO / "tests").glob("test_*.py")
               for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
    assert len(named) >= 25
    assert not named - defined, f"docs/reliability.md names tests that do not exist: {sorted(named - defined)}"
