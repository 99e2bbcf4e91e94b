"""Fails when a module imports from a test module, or bench/ from the test suite's fixtures.

Shared test helpers live in `tests/factories` (and the non-test helper modules beside the
tests); a test module imported by another runs its module-level code twice under two names and
hides which helpers are shared. Ruff cannot ban an import by a pattern of module names, so
`make lint` and CI run this: `python -m tests.import_rules [ROOT]`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].startswith("test_")


def _imported(node: ast.AST, package: str) -> Iterator[str]:
    """Every module `node` imports, as a dotted name (relative imports resolved in `package`)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            parent = ".".join(parts[: len(parts) - node.level + 1])
            base = f"{parent}.{base}".strip(".")
        yield base
        # `from tests.app import test_cli` imports the module test_cli itself.
        yield from (f"{base}.{alias.name}" for alias in node.names)


def _why_not(name: str, top: str) -> str | None:
    """Why importing `name` from a module under `top` (tests or bench) breaks a rule, or None."""
    parts = name.split(".")
    if parts[0] not in ("tests", top):
        return None
    if _is_test_module(name):
        return f"imports the test module {name}; move what it shares to tests/factories"
    if top == "bench" and parts[0] == "tests" and ("conftest" in parts or parts[-1][:1] == "_"):
        # The suite's fixtures and private helpers change with the tests; the harnesses that
        # start real servers (tests.vllm_server, tests.scaleout.servers) are shared on purpose.
        return f"bench imports {name} of the test suite; put what it needs in bench/common.py"
    return None


def problems(root: Path) -> list[str]:
    """`path:line: ...` for each forbidden import under root's tests/ and bench/."""
    found: list[str] = []
    for top in ("tests", "bench"):
        for path in sorted((root / top).rglob("*.py")):
            relative = path.relative_to(root)
            package = ".".join(relative.with_suffix("").parts[:-1])
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                reasons = (_why_not(name, top) for name in _imported(node, package))
                reason = next((r for r in reasons if r is not None), None)
                if reason is not None:
                    found.append(f"{relative}:{getattr(node, 'lineno', 0)}: {reason}")
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else REPO
    found = problems(root)
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
