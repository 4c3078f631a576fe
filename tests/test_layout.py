"""The import rules of docs/architecture.md, read from the code itself (no imports run)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("geo", "ingest", "predict", "maps", "civic", "service", "sample_data")


def _imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Every ``import x`` and ``from x import a, b`` of a module, as (module, names)."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "service"])
def test_nothing_imports_service(package):
    wrong = [f"{path.relative_to(ROOT)}: {module}" for path in _modules(package)
             for module, _ in _imports(path) if module.split(".")[0] == "service"]
    assert not wrong


def test_geo_imports_no_web_map_or_model_library():
    banned = ("fastapi", "starlette", "folium", "branca", "sklearn", "skops")
    wrong = [f"{path.relative_to(ROOT)}: {module}" for path in _modules("geo")
             for module, _ in _imports(path) if module.split(".")[0] in banned]
    assert not wrong


def test_no_router_imports_another():
    wrong = [f"{path.relative_to(ROOT)}: {module}" for path in _modules("service/routers")
             for module, names in _imports(path)
             if module.startswith("service.routers") or (module == "service" and any(
                 (ROOT / "service" / "routers" / f"{name}.py").exists() for name in names))]
    assert not wrong


def test_command_groups_share_only_cli_common():
    groups = [p for p in _modules("service/cli") if p.name not in ("__init__.py", "common.py")]
    assert len(groups) >= 9
    wrong = [f"{path.relative_to(ROOT)}: {module} {names}" for path in groups
             for module, names in _imports(path)
             if (module.startswith("service.cli") and module != "service.cli.common")
             or module.startswith("service.routers")]
    assert not wrong


def test_service_imports_no_private_name():
    # `_` (gettext) and `_l` (its lazy form) are the i18n functions, public by convention.
    wrong = [f"{path.relative_to(ROOT)}: from {module} import {name}"
             for path in _modules("service")
             for module, names in _imports(path) if _ours(module)
             for name in names if name.startswith("_") and name not in ("_", "_l")]
    assert not wrong
