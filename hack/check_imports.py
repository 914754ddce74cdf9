"""Check berth's import boundaries by reading every module's imports (no code is run).

cri may import shim and snapshotter; shim and snapshotter never import cri or each other;
shim imports only the standard library (it is exec'd with ``python -I -S``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FORBIDDEN = {
    "shim": {"cri", "snapshotter"},
    "snapshotter": {"cri", "shim"},
    "cri": set(),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def problems(root: Path) -> list[str]:
    stdlib = set(sys.stdlib_module_names)
    out: list[str] = []
    for package, banned in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for lineno, module in imported_modules(path):
                top = module.split(".")[0]
                where = f"{path.relative_to(root)}:{lineno}"
                if top in banned:
                    out.append(f"{where}: {package} must not import {module}")
                elif package == "shim" and top not in stdlib and top != "shim":
                    out.append(f"{where}: shim imports only the standard library, not {module}")
    return out


def main() -> int:
    found = problems(Path(sys.argv[1]))
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
