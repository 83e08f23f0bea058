"""The three layers import downwards only: kernels use no dask/astropy.io/zarr; the array layer
never imports orchestration (io/, night/, cli)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "ccdflow"
# Top-level modules that open files, compute or talk to a cluster; every other one is array layer.
ORCHESTRATION = {"calibrator.py", "cli.py", "reduction.py", "synthetic.py", "__init__.py"}
ARRAY_LAYER = sorted(p.name for p in SRC.glob("*.py") if p.name not in ORCHESTRATION)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((SRC / "kernels").glob("*.py")), ids=lambda p: p.name)
def test_kernels_are_pure_numpy(path):
    forbidden = ("dask", "distributed", "zarr", "astropy", "ccdflow.io", "ccdflow.night")
    bad = {name for name in _imports(path) for f in forbidden if name == f or name.startswith(f + ".")}
    own = {name for name in _imports(path)
           if name.startswith("ccdflow.") and not name.startswith("ccdflow.kernels")}
    assert not bad | own, f"{path.name} imports {sorted(bad | own)}"


@pytest.mark.parametrize("name", ARRAY_LAYER)
def test_array_layer_never_imports_orchestration(name):
    path = SRC / name
    forbidden = ("ccdflow.io", "ccdflow.night", "ccdflow.cli", "zarr", "distributed")
    bad = {n for n in _imports(path) for f in forbidden if n == f or n.startswith(f + ".")}
    assert not bad, f"{name} imports {sorted(bad)}"
