"""The public names of DESIGN.md are importable from the package, each as the kind it is documented as."""

import inspect
import json
import random
import subprocess
import sys

import pytest

import ccdflow

# The documented kind of every public name: a function, a class (an exception class counts as a
# class), or a plain string (the version).
KINDS = {
    "Calibrator": "class", "OverscanMethods": "class", "OverscanParams": "class",
    "CombineParams": "class", "Combined": "class", "combine": "function", "Frame": "class",
    "open_frame": "function", "open_stack": "function", "Master": "class", "Region": "class",
    "Detector": "class",
    "ImageReduction": "class", "NightConfig": "class", "load_config": "function",
    "reduce_night": "function", "read_product": "function", "CcdflowError": "class", "ConfigError": "class",
    "FrameError": "class", "FrameReadError": "class", "IncompatibleFramesError": "class",
    "MissingCalibrationError": "class", "OutputExistsError": "class", "__version__": "str",
}

# Imports NAMES in the given order, the first one into a fresh interpreter, and reports the kind
# of each right after its import and again once all are imported.
PROBE = """
import importlib, inspect, json, sys
def kind(obj):
    if isinstance(obj, str):
        return "str"
    if inspect.isclass(obj):
        return "class"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return "function"
    return type(obj).__name__
names = json.loads(sys.argv[1])
first = {}
for name in names:
    exec(f"from ccdflow import {name} as obj")
    first[name] = kind(obj)
import ccdflow
after = {name: kind(getattr(ccdflow, name)) for name in names}
print(json.dumps([first, after]))
"""


def _probe(names: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROBE, json.dumps(names)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_every_public_name_has_a_documented_kind():
    assert set(ccdflow.__all__) == set(KINDS)


def test_each_name_is_its_kind_in_a_fresh_interpreter_and_in_any_order():
    # each name is imported first into its own fresh interpreter, the others after it in a
    # seeded shuffled order; the interpreters run side by side
    names = sorted(KINDS)
    runs = {}
    for name in names:
        rest = [n for n in names if n != name]
        random.Random(name).shuffle(rest)
        runs[name] = _probe([name, *rest])
    for name, run in runs.items():
        stdout, stderr = run.communicate(timeout=240)
        assert run.returncode == 0, stderr
        first, after = json.loads(stdout)
        assert first[name] == KINDS[name], f"fresh 'from ccdflow import {name}' gave {first[name]}"
        assert first == KINDS and after == KINDS


def test_combine_is_the_function_however_it_is_reached():
    import ccdflow.array.combination  # noqa: F401  (binds ccdflow.array, never ccdflow.combine)

    assert inspect.isfunction(ccdflow.combine)
    from ccdflow import combine

    assert combine is ccdflow.array.combination.combine


@pytest.mark.parametrize("name", sorted(n for n, k in KINDS.items() if k != "str"))
def test_every_public_object_has_a_numpydoc_docstring_with_an_example(name):
    doc = inspect.getdoc(getattr(ccdflow, name)) or ""
    assert "Examples\n--------\n>>> " in doc, f"{name} has no runnable example"


def test_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="no attribute 'Calibratr'"):
        ccdflow.Calibratr  # noqa: B018


def test_importing_the_package_does_not_start_distributed():
    code = "import ccdflow, sys; print('distributed' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_errors_mix_in_the_builtins_users_catch():
    assert issubclass(ccdflow.ConfigError, ValueError)
    assert issubclass(ccdflow.FrameReadError, OSError)
    assert issubclass(ccdflow.IncompatibleFramesError, ValueError)
    assert issubclass(ccdflow.MissingCalibrationError, LookupError)
    assert issubclass(ccdflow.OutputExistsError, FileExistsError)
