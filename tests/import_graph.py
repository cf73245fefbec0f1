"""Which top-level folder imports which: the layering ARCHITECTURE.md asks for, read from the code.

    python tests/import_graph.py            # edges between folders, with the modules behind each
    python tests/import_graph.py --root DIR # another checkout (e.g. an older commit's worktree)

Every ``import ganexport.<folder>...`` / ``from ganexport.<folder>... import`` in a
folder's modules is an edge, whether it runs at import time or inside a function
(``lazy`` edges). tests/test_layers.py asserts on the same graph.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

FOLDERS = ("ganexport", "training", "export", "serving", "demo", "benchmarks")
HUB_MODULES = ("catalog", "cli", "images", "machine", "sketch", "repository")


def _layer(module: str) -> str | None:
    """'ganexport.serving.backends' -> 'serving'; 'ganexport.catalog' -> 'ganexport' (the hub)."""
    parts = module.split(".")
    if parts[0] != "ganexport":
        return None
    if len(parts) == 1 or parts[1] not in FOLDERS:
        return "ganexport"
    return parts[1]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module imported, at module level?) for every import statement in a file."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def graph(root: Path) -> dict[tuple[str, str], set[str]]:
    """(from folder, to folder) -> the 'file -> module' imports behind the edge ('(lazy)' when inside a function)."""
    edges: dict[tuple[str, str], set[str]] = {}
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            for module, eager in imports(path):
                target = _layer(module)
                if target is None and module.split(".")[0] in ("torch", "gradio"):
                    target = module.split(".")[0]
                if target and target != folder:
                    detail = f"{path.relative_to(root)} -> {module}" + ("" if eager else " (lazy)")
                    edges.setdefault((folder, target), set()).add(detail)
    return edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--detail", action="store_true", help="List the imports behind each edge.")
    args = parser.parse_args()
    for (src, dst), details in sorted(graph(args.root).items()):
        eager = sum(not d.endswith("(lazy)") for d in details)
        print(f"{src:10s} -> {dst:10s} {eager} at import, {len(details) - eager} lazy")
        if args.detail:
            for d in sorted(details):
                print(f"    {d}")


if __name__ == "__main__":
    main()
