"""docs/architecture.md says imports flow downward through these layers; this holds the
code to it (a module may import its own layer or any layer below, never one above)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "keel"

# Top to bottom, as in docs/architecture.md. A name stands for a module or a package.
LAYERS = [
    ["keel", "keel.__main__", "keel.aio", "keel.api", "keel.batch", "keel.chat", "keel.cli",
     "keel.doctor",
     "keel.generate", "keel.server", "keel.summary"],
    ["keel.handle", "keel.sources", "keel.call_memo"],
    ["keel.cache"],
    ["keel.loaded"],
    ["keel.scheduler", "keel.channel", "keel.remote"],
    ["keel.generation", "keel.prompt"],
    ["keel.structured"],
    ["keel.engine"],
    ["keel.models"],
    ["keel.params", "keel.events", "keel.sampling", "keel._philox", "keel.penalties", "keel.detok",
     "keel.errors",
     "keel.config", "keel.file_memo"],
]  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {f"{target}.{a.name}" for a in node.names} if not node.module else {target}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keel"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("keel")}
    return found


def _layer(module: str) -> int:
    best = None
    for index, names in enumerate(LAYERS):
        for name in names:
            inside = module == name or (name != "keel" and module.startswith(name + "."))
            if inside and (best is None or len(name) > best[1]):
                best = (index, len(name))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and the docs"
    return best[0]


def test_imports_flow_downward():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = _module_name(path)
        for target in _imports(path):
            if target.split(".")[0] != "keel":
                continue
            if _layer(target) < _layer(module):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports that flow upward:\n" + "\n".join(sorted(wrong))


def test_every_module_is_documented():
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("__init__.py", "__main__.py") and path.parent != PACKAGE:
            continue
        relative = path.relative_to(PACKAGE.parent).as_posix()
        package = relative.rsplit("/", 1)[0] + "/"
        if relative not in text and package not in text:
            missing.append(relative)
    assert not missing, f"not in docs/architecture.md: {missing}"


def test_the_checker_sees_imports():
    assert "keel.scheduler" in _imports(PACKAGE / "loaded.py")
    assert "keel.engine.context" in _imports(PACKAGE / "engine" / "slots.py")
