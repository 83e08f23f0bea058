"""The layers are folders and import downwards only.

kernels/ (pure numpy/numba) < array/ (lazy dask, never computes) < io/ and night/ (files, zarr,
the cluster) < the entry points (calibrator.py, reduction.py, cli.py, __main__.py). Two
top-level modules, errors.py and _version.py, are the foundation every layer but the kernels
may import. The layer of a module is read from its path, never from a list of file names.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "ccdflow"
FOUNDATION = {"ccdflow.errors", "ccdflow._version", "ccdflow"}
# what each layer may not import (besides anything of a higher layer)
RANK = {"kernels": 0, "array": 1, "io": 2, "synthetic": 2, "night": 3}
ENTRY_RANK = 4


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _rank(module: str) -> int | None:
    """Layer rank of a ccdflow module from its package path; None for the foundation."""
    if module in FOUNDATION:
        return None
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in RANK:
        return RANK[parts[1]]
    return ENTRY_RANK


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


MODULES = sorted(SRC.rglob("*.py"))
# a folder without Python modules (configs/: package data) is not a layer
FOLDERS = sorted(p.name for p in SRC.iterdir()
                 if p.is_dir() and not p.name.startswith("_") and any(p.rglob("*.py")))


def test_every_folder_is_a_known_layer():
    assert set(FOLDERS) <= set(RANK), f"unknown package folder(s): {set(FOLDERS) - set(RANK)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    own = _rank(_module(path))
    if own is None:  # the foundation imports no other ccdflow module
        assert not {n for n in _imports(path) if n.startswith("ccdflow.")} - FOUNDATION
        return
    upward = sorted(n for n in _imports(path) if n.startswith("ccdflow")
                    and (r := _rank(n)) is not None and r > own)
    assert not upward, f"{path.relative_to(SRC)} (layer {own}) imports {upward}"


@pytest.mark.parametrize("path", sorted((SRC / "kernels").glob("*.py")), ids=lambda p: p.name)
def test_kernels_are_pure_numpy(path):
    forbidden = ("dask", "distributed", "zarr", "astropy", "ccdflow")
    bad = {n for n in _imports(path) for f in forbidden if n == f or n.startswith(f + ".")}
    bad -= {n for n in bad if n.startswith("ccdflow.kernels")}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((SRC / "array").glob("*.py")), ids=lambda p: p.name)
def test_array_layer_never_touches_files_or_the_cluster(path):
    forbidden = ("ccdflow.io", "ccdflow.night", "zarr", "distributed")
    bad = {n for n in _imports(path) for f in forbidden if n == f or n.startswith(f + ".")}
    assert not bad, f"array/{path.name} imports {sorted(bad)}"


def test_the_rule_catches_a_kernel_importing_dask(tmp_path):
    # the checks above must be able to fail: a planted module is judged by the same functions
    fake = tmp_path / "k.py"
    fake.write_text("import dask.array as da\nfrom ccdflow.array.combination import combine\n")
    names = _imports(fake)
    assert "dask.array" in names and _rank("ccdflow.array.combination") > RANK["kernels"]
    assert _rank("ccdflow.io.fits") > RANK["array"] and _rank("ccdflow.night.run") > RANK["array"]
