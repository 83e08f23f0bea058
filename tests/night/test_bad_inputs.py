"""Bad inputs, one per case, each on a fresh copy of a small clean night.

Every case asserts: the outcome (``report.ok``), the named reason in ``report.json``, every
other light done and pixel-identical to a clean run (or to a clean run without the frame left
out), no input file changed, and no file created outside the output folder.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from badnight import (
    Night,
    arrays,
    copy_night,
    edit_header,
    replace_data,
    report_json,
    set_card_bytes,
    tree_hashes,
    truncate,
    write_clean_night,
)
from click.testing import CliRunner

from ccdflow.cli import main

pytestmark = pytest.mark.slow  # one small night reduced per case, about 1.5 s each


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Night:
    night = write_clean_night(tmp_path_factory.mktemp("clean"))
    report = night.run()
    assert report.ok, report.failures
    return night


_REFERENCES: dict[str, Path] = {}


def reference_without(clean: Night, tmp_path_factory, stem: str) -> Path:
    """Outputs of the clean night reduced without one raw frame (computed once per frame)."""
    if stem not in _REFERENCES:
        night = copy_night(clean, tmp_path_factory.mktemp(f"without_{stem}"))
        csv = night.root / "night.csv"
        csv.write_text("\n".join(line for line in csv.read_text().splitlines()
                                 if f"/{stem}.fits" not in line) + "\n")
        assert night.run().ok
        _REFERENCES[stem] = night.output
    return _REFERENCES[stem]


def run_case(clean: Night, tmp_path: Path, damage, *, config: dict | None = None):
    """Copy, damage, run; check no input changed and nothing was written outside the output."""
    night = copy_night(clean, tmp_path / "night")
    damage(night)
    if config:
        night.set_config(**config)
    inputs = tree_hashes(tmp_path)
    outside = set(tree_hashes(tmp_path.parent, skip=tmp_path))
    report = night.run()
    assert tree_hashes(tmp_path, skip=night.output) == inputs, "an input file changed"
    assert set(tree_hashes(tmp_path.parent, skip=tmp_path)) == outside, "a file outside the output"
    assert (night.output / "report.json").exists()
    return night, report, report_json(night)


def assert_lights_equal(got: Path, want: Path, names: list[str]) -> None:
    for name in names:
        for x, y in zip(arrays(got / "lights" / name), arrays(want / "lights" / name), strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)


def light_names(clean: Night, but: str | None = None) -> list[str]:
    return [p.name for p in clean.files["light"] if p.name != but]


def failure_of(data: dict, path: Path) -> str:
    return data["failures"][str(path)]


# -- lights: named failures, the other lights unchanged --------------------------------------

LIGHT_FAILURES = {
    "exptime_huge": (lambda p: edit_header(p, EXPTIME=1e30), "not a plausible exposure time"),
    "exptime_negative": (lambda p: edit_header(p, EXPTIME=-5.0), "non-negative exposure time"),
    "exptime_text": (lambda p: edit_header(p, EXPTIME="long"), "non-negative exposure time"),
    "exptime_unparsable": (lambda p: set_card_bytes(p, "EXPTIME", "12x.0"), "cannot be parsed"),
    "unterminated_string": (lambda p: set_card_bytes(p, "OBJECT", "'SYNTH FIELD"),
                            "cannot be parsed"),
    "bscale_zero": (lambda p: set_card_bytes(p, "BSCALE", "0.0".rjust(20)), "BSCALE = 0.0"),
    "all_nan": (lambda p: replace_data(p, np.full((32, 40), np.nan, np.float32)),
                "no pixel has a finite value"),
    "truncated": (lambda p: truncate(p, 0.6), "truncated"),
    "not_fits": (lambda p: p.write_text("this is not FITS\n" * 200), "cannot read FITS"),
    "empty_file": (lambda p: p.write_bytes(b""), "cannot read FITS"),
    "missing_file": (lambda p: p.unlink(), "cannot read FITS"),
    "wrong_shape": (lambda p: replace_data(p, np.full((20, 20), 1000, np.uint16)),
                    "lies outside the 20x20 frame"),
    "not_an_image": (lambda p: fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="E", array=np.zeros(3))])]).writeto(p, overwrite=True),
        "NAXIS = 0"),
}


@pytest.mark.parametrize("case", sorted(LIGHT_FAILURES))
def test_a_bad_light_fails_by_name_and_the_rest_is_unchanged(case, clean, tmp_path):
    damage, reason = LIGHT_FAILURES[case]
    bad = clean.files["light"][1].name
    night, report, data = run_case(clean, tmp_path, lambda n: damage(n.root / "raw" / bad))
    assert report.ok is False and data["ok"] is False
    assert reason in failure_of(data, night.root / "raw" / bad)
    assert list(data["failures"]) == [str(night.root / "raw" / bad)]
    assert report.count("done") == 2
    assert not (night.output / "lights" / bad).exists()
    assert_lights_equal(night.output, clean.output, light_names(clean, but=bad))


def test_a_corrupt_tile_compressed_light_fails_by_name(clean, tmp_path):
    def damage(night: Night):
        raw = night.root / "raw" / clean.files["light"][1].name
        with fits.open(raw) as hdul:
            comp = fits.CompImageHDU(hdul[0].data, header=hdul[0].header, compression_type="RICE_1")
            fits.HDUList([fits.PrimaryHDU(), comp]).writeto(raw.with_suffix(".fits.fz"))
        raw.unlink()
        fz = raw.with_suffix(".fits.fz")
        data = bytearray(fz.read_bytes())
        start = 2880 * 2 + 2880 * 2  # primary header + table header blocks
        data[start + 200:start + 600] = b"\xff" * 400
        fz.write_bytes(bytes(data))
        csv = night.root / "night.csv"
        csv.write_text(csv.read_text().replace(raw.name, fz.name))

    night, report, data = run_case(clean, tmp_path, damage)
    fz = night.root / "raw" / (Path(clean.files["light"][1].name).stem + ".fits.fz")
    assert report.ok is False and "FrameReadError" in failure_of(data, fz)
    assert report.count("done") == 2
    assert_lights_equal(night.output, clean.output,
                        light_names(clean, but=clean.files["light"][1].name))


# -- documented fallbacks: visible in the report, the summary and the product's header ---------

FALLBACKS = {
    "no_exptime": ({"EXPTIME": None}, "1 s assumed"),
    "gain_unavail": ({"GAIN": "unavail"}, "GAIN = 'unavail' is not a number"),
    "no_gain": ({"GAIN": None}, "gain 1.0 e-/ADU assumed"),
    "no_rdnoise": ({"RDNOISE": None}, "read_noise 0.0 e- assumed"),
    "rdnoise_text": ({"RDNOISE": "n/a"}, "RDNOISE = 'n/a' is not a number"),
}


@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_a_fallback_for_a_light_is_visible_everywhere(case, clean, tmp_path):
    cards, note = FALLBACKS[case]
    bad = clean.files["light"][0].name
    night, report, data = run_case(clean, tmp_path,
                                   lambda n: edit_header(n.root / "raw" / bad, **cards))
    assert report.ok, report.failures
    entry = data["frames"][str(night.root / "raw" / bad)]
    assert entry["status"] == "done" and any(note in w for w in entry["warnings"])
    assert any(note in w for w in data["warnings"]) and note in report.summary()
    header = fits.getheader(night.output / "lights" / bad)
    assert header["CCDFNWRN"] >= 1
    # long COMMENTs are wrapped over several cards, which drops the space at a break
    assert note.replace(" ", "") in "".join(str(c) for c in header["COMMENT"]).replace(" ", "")
    assert fits.getheader(night.output / "lights" / clean.files["light"][2].name)["CCDFNWRN"] == 0
    assert_lights_equal(night.output, clean.output, light_names(clean, but=bad))


def test_strict_turns_a_missing_exposure_time_into_a_failure(clean, tmp_path):
    bad = clean.files["light"][0].name
    night, report, data = run_case(clean, tmp_path,
                                   lambda n: edit_header(n.root / "raw" / bad, EXPTIME=None),
                                   config={"calibration": {"strict": True}})
    assert report.ok is False
    assert "no exposure time card" in failure_of(data, night.root / "raw" / bad)
    assert_lights_equal(night.output, clean.output, light_names(clean, but=bad))


def test_a_dark_without_exposure_time_is_one_second_and_says_so(clean, tmp_path):
    bad = clean.files["dark"][0].name
    night, report, data = run_case(clean, tmp_path,
                                   lambda n: edit_header(n.root / "raw" / bad, EXPTIME=None))
    assert report.ok
    notes = data["masters"]["dark"]["notes"][str(night.root / "raw" / bad)]
    assert any("1 s assumed" in n for n in notes) and "1 s assumed" in report.summary()
    header = fits.getheader(night.output / "masters/dark.fits")
    assert header["CCDFNWRN"] == 1 and bad in "".join(str(c) for c in header["COMMENT"])


def test_strict_leaves_a_dark_without_exposure_time_out(clean, tmp_path, tmp_path_factory):
    bad = clean.files["dark"][0]
    night, report, data = run_case(clean, tmp_path,
                                   lambda n: edit_header(n.root / "raw" / bad.name, EXPTIME=None),
                                   config={"calibration": {"strict": True}})
    assert report.ok is False
    assert "no exposure time card" in failure_of(data, night.root / "raw" / bad.name)
    assert fits.getheader(night.output / "masters/dark.fits")["NCOMBINE"] == 2
    want = reference_without(clean, tmp_path_factory, bad.stem)
    assert_lights_equal(night.output, want, light_names(clean))


# -- zero-second darks are biases ------------------------------------------------------------


def test_a_zero_second_dark_is_used_as_a_bias_and_reported(clean, tmp_path):
    bad = clean.files["dark"][0].name
    night, report, data = run_case(clean, tmp_path,
                                   lambda n: edit_header(n.root / "raw" / bad, EXPTIME=0.0))
    assert report.ok, report.failures
    assert data["masters"]["bias"]["inputs"][-1] == str(night.root / "raw" / bad)
    assert len(data["masters"]["dark"]["inputs"]) == 2
    assert "is a bias; used as a bias" in report.summary()
    assert fits.getheader(night.output / "masters/bias.fits")["CCDFNWRN"] == 1
    assert np.abs(fits.getdata(night.output / "masters/dark.fits")).max() < 1e4  # ADU/s
    # the same night with that file listed as a bias gives the same products
    listed = copy_night(night, tmp_path / "listed")
    csv = listed.root / "night.csv"
    csv.write_text(csv.read_text().replace(f"dark, raw/{bad}", f"bias, raw/{bad}"))
    assert listed.run().ok
    for name in ("bias", "dark", "flat_V"):
        np.testing.assert_array_equal(fits.getdata(night.output / f"masters/{name}.fits"),
                                      fits.getdata(listed.output / f"masters/{name}.fits"))
    assert_lights_equal(night.output, listed.output, light_names(clean))


def test_all_darks_of_zero_seconds_make_no_dark_master(clean, tmp_path):
    def damage(night):
        for path in night.files["dark"]:
            edit_header(path, EXPTIME=0.0)

    night, report, data = run_case(clean, tmp_path, damage)
    assert report.ok and "dark" not in data["masters"]
    assert len(data["masters"]["bias"]["inputs"]) == 6
    assert any("no dark frames" in w for w in data["warnings"])
    assert report.count("done") == 3


# -- calibration frames: left out with the reason, the master from the rest ------------------

def below_overscan(image: int, overscan: int) -> np.ndarray:
    """A raw frame whose image area reads ``image`` and its overscan ``overscan`` ADU."""
    frame = np.full((32, 40), image, np.int16)
    frame[:, 32:] = overscan
    return frame


CALIBRATION_DAMAGE = {
    "bias_unparsable": ("bias", 1, lambda p: set_card_bytes(p, "EXPTIME", "12x.0"),
                        "cannot be parsed"),
    "bias_bscale_zero": ("bias", 1, lambda p: set_card_bytes(p, "BSCALE", "0".rjust(20)), "BSCALE"),
    "bias_not_fits": ("bias", 1, lambda p: p.write_text("junk\n" * 100), "cannot read FITS"),
    "dark_unparsable": ("dark", 1, lambda p: set_card_bytes(p, "IMAGETYP", "'DARK"),
                        "cannot be parsed"),
    "dark_exptime_huge": ("dark", 1, lambda p: edit_header(p, EXPTIME=1e30),
                          "not a plausible exposure time"),
    "flat_unparsable": ("flat", 1, lambda p: set_card_bytes(p, "EXPTIME", "5.0.0"),
                        "cannot be parsed"),
    "flat_truncated": ("flat", 1, lambda p: truncate(p, 0.6), "truncated"),
    "flat_all_zero": ("flat", 1, lambda p: replace_data(p, np.zeros((32, 40), np.uint16)),
                      "a flat must be above zero"),
    "flat_below_bias": ("flat", 1, lambda p: replace_data(p, below_overscan(900, 1000)),
                        "a flat must be above zero"),
    "flat_negative": ("flat", 1, lambda p: replace_data(p, below_overscan(-300, 0)),
                      "a flat must be above zero"),
}


@pytest.mark.parametrize("case", sorted(CALIBRATION_DAMAGE))
def test_a_bad_calibration_frame_is_left_out_by_name(case, clean, tmp_path, tmp_path_factory):
    kind, index, damage, reason = CALIBRATION_DAMAGE[case]
    bad = clean.files[kind][index]
    night, report, data = run_case(clean, tmp_path, lambda n: damage(n.root / "raw" / bad.name))
    assert report.ok is False
    assert reason in failure_of(data, night.root / "raw" / bad.name)
    assert report.count("done") == 3
    master = "flat_V" if kind == "flat" else kind
    assert fits.getheader(night.output / "masters" / f"{master}.fits")["NCOMBINE"] == 2
    want = reference_without(clean, tmp_path_factory, bad.stem)
    assert_lights_equal(night.output, want, light_names(clean))


# -- a master that cannot be made fails, and so do the lights that need it -------------------


def _all_flats(data_of):
    def damage(night):
        for path in night.files["flat"]:
            replace_data(path, data_of())
    return damage


MASTER_FAILURES = {
    "raw_flats_all_zero": (lambda: np.zeros((32, 40), np.uint16), "a flat must be above zero"),
    "raw_flats_below_bias": (lambda: below_overscan(900, 1000), "a flat must be above zero"),
    "raw_flats_negative": (lambda: below_overscan(-300, 0), "a flat must be above zero"),
    "processed_flats_nan": (lambda: np.full((32, 32), np.nan, np.float32), "flat level nan"),
    "processed_flats_zero": (lambda: np.zeros((32, 32), np.float32), "flat level 0"),
    "processed_flats_negative": (lambda: np.full((32, 32), -1.0, np.float32), "flat level -1"),
}


@pytest.mark.parametrize("case", sorted(MASTER_FAILURES))
def test_a_master_flat_that_cannot_be_made_fails_its_lights(case, clean, tmp_path):
    data_of, reason = MASTER_FAILURES[case]
    night, report, data = run_case(clean, tmp_path, _all_flats(data_of))
    assert report.ok is False
    flat = data["masters"]["flat_V"]
    assert flat["status"] == "failed" and "no usable input frame" in flat["error"]
    assert all(reason in why for why in flat["dropped"].values()) and len(flat["dropped"]) == 3
    for light in night.files["light"]:
        why = failure_of(data, light)
        assert why.startswith("MissingCalibrationError") and "flat_V" in why
    assert not (night.output / "masters/flat_V.fits").exists()
    assert data["masters"]["bias"]["status"] == "built"


# -- names that cannot be paths --------------------------------------------------------------


def _rename_light(new_name: str):
    def damage(night: Night):
        old = night.files["light"][0]
        old.rename(old.parent / new_name)
        csv = night.root / "night.csv"
        csv.write_text(csv.read_text().replace(old.name, new_name))
    return damage


@pytest.mark.parametrize("new_name, output", [
    ("lumière_V_000.fits", "lumiere_V_000.fits"),
    ("my light #1.fits", "my-light-1-"),
    ("..fits", "frame-"),
])
def test_unsafe_file_names_give_safe_outputs_and_keep_the_original(new_name, output, clean,
                                                                   tmp_path):
    night, report, data = run_case(clean, tmp_path, _rename_light(new_name))
    assert report.ok, report.failures
    entry = data["frames"][str(night.root / "raw" / new_name)]
    assert entry["status"] == "done" and Path(entry["output"]).name.startswith(output)
    product = Path(entry["output"])
    assert product.parent == night.output / "lights"
    history = str(fits.getheader(product)["HISTORY"])
    assert new_name.encode("ascii", "backslashreplace").decode() in history
    np.testing.assert_array_equal(arrays(product)[0],
                                  arrays(clean.output / "lights" / clean.files["light"][0].name)[0])


def _set_everywhere(kinds, **cards):
    def damage(night: Night):
        for kind in kinds:
            for path in night.files[kind]:
                edit_header(path, **cards)
    return damage


@pytest.mark.parametrize("cards", [
    {"FILTER": "../../V"}, {"FILTER": "V/R"}, {"FILTER": "V*?<>|:"},
    {"OBJECT": "../../../outside"}, {"OBJECT": "..\\..\\x y"},
])
def test_filter_and_object_values_never_leave_the_output(cards, clean, tmp_path):
    night, report, data = run_case(clean, tmp_path, _set_everywhere(("flat", "light"), **cards))
    assert report.ok, report.failures
    assert report.count("done") == 3
    products = [p for p in night.output.rglob("*") if p.is_file()]
    assert all(night.output in p.parents for p in products)
    stacks = list((night.output / "stacks").glob("*.fits"))
    assert len(stacks) == 1 and ".." not in stacks[0].name and "/" not in stacks[0].stem
    header = fits.getheader(stacks[0])
    key, value = next(iter(cards.items()))
    assert header[key] == value.encode("ascii", "backslashreplace").decode() or header[key] == value
    assert_lights_equal(night.output, clean.output, light_names(clean))


# -- a file listed twice is counted once -----------------------------------------------------


def _list_again(kind_of_line: str, path_of):
    def damage(night: Night):
        csv = night.root / "night.csv"
        csv.write_text(csv.read_text() + f"{kind_of_line}, {path_of(night)}\n")
    return damage


@pytest.mark.parametrize("case", ["light_twice", "bias_twice", "flat_as_light", "bias_by_symlink"])
def test_a_frame_listed_twice_is_warned_and_counted_once(case, clean, tmp_path):
    def symlinked_bias(night):
        link = night.root / "bias_link.fits"
        link.symlink_to(night.files["bias"][0])
        return link.name

    damage = {
        "light_twice": _list_again("light", lambda n: f"raw/{n.files['light'][0].name}"),
        "bias_twice": _list_again("bias", lambda n: f"raw/{n.files['bias'][0].name}"),
        "flat_as_light": _list_again("light", lambda n: f"raw/{n.files['flat'][0].name}"),
        "bias_by_symlink": _list_again("bias", symlinked_bias),
    }[case]
    night, report, data = run_case(clean, tmp_path, damage)
    assert report.ok, report.failures
    assert any("counted once" in w for w in data["warnings"]) and "counted once" in report.summary()
    assert len(data["frames"]) == 3
    for name in ("bias", "dark", "flat_V"):
        assert fits.getheader(night.output / "masters" / f"{name}.fits")["NCOMBINE"] == 3
    assert_lights_equal(night.output, clean.output, light_names(clean))
    stack = next((night.output / "stacks").glob("*.fits"))
    assert fits.getheader(stack)["NCOMBINE"] == 3


# -- directory mode: odd files are listed, never an abort ------------------------------------


def _directory_mode(extra):
    def damage(night: Night):
        night.set_config(input={"directory": "raw"})
        extra(night)
    return damage


def _focus(night):
    path = night.root / "raw" / "focus_001.fits"
    shutil.copy(night.files["light"][0], path)
    edit_header(path, IMAGETYP="FOCUS", OBSTYPE="FOCUS")
    return path


def _untyped(night):
    path = night.root / "raw" / "untyped.fits"
    shutil.copy(night.files["light"][0], path)
    edit_header(path, IMAGETYP=None, OBSTYPE=None)
    return path


def _stale_master(night):
    path = night.root / "raw" / "old_master_bias.fits"
    fits.PrimaryHDU(np.zeros((32, 32), np.float32),
                    header=fits.Header([("IMAGETYP", "MASTER BIAS")])).writeto(path)
    return path


def _text_file(night):
    path = night.root / "raw" / "notes.fits"
    path.write_text("observing log\n")
    return path


def _empty(night):
    path = night.root / "raw" / "empty.fits"
    path.write_bytes(b"")
    return path


def _gzip_junk(night):
    path = night.root / "raw" / "junk.fits.gz"
    path.write_bytes(gzip.compress(b"not fits at all" * 10))
    return path


DIRECTORY_CASES = {
    "focus": (_focus, "ignored", "unknown frame type 'FOCUS'"),
    "untyped": (_untyped, "ignored", "no IMAGETYP or OBSTYPE"),
    "stale_master": (_stale_master, "ignored", "unknown frame type 'MASTER BIAS'"),
    "text_file": (_text_file, "failed", "cannot read FITS"),
    "empty_file": (_empty, "failed", "cannot read FITS"),
    "gzip_junk": (_gzip_junk, "failed", "cannot read FITS"),
}


@pytest.mark.parametrize("case", sorted(DIRECTORY_CASES))
def test_odd_files_in_a_scanned_folder_are_listed_not_fatal(case, clean, tmp_path):
    make, outcome, reason = DIRECTORY_CASES[case]
    made = {}
    night, report, data = run_case(clean, tmp_path,
                                   _directory_mode(lambda n: made.update(path=make(n))))
    path = str(made["path"].resolve())
    if outcome == "ignored":
        assert report.ok, report.failures
        assert reason in data["ignored"][path] and path not in data["frames"]
        assert any(path in w and "ignored" in w for w in data["warnings"])
    else:
        assert report.ok is False and reason in failure_of(data, Path(path))
    assert report.count("done") == 3
    assert_lights_equal(night.output, clean.output, light_names(clean))


# -- validate reports instead of crashing ----------------------------------------------------


@pytest.mark.parametrize("kind", ["light", "bias", "dark", "flat"])
def test_validate_names_an_unparsable_card(kind, clean, tmp_path):
    night = copy_night(clean, tmp_path / "night")
    bad = night.files[kind][0]
    set_card_bytes(bad, "EXPTIME", "12x.0")
    result = CliRunner().invoke(main, ["validate", str(night.config)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"invalid: {bad}" in result.output and "cannot be parsed" in result.output


def test_validate_names_odd_files_of_a_scanned_folder(clean, tmp_path):
    night = copy_night(clean, tmp_path / "night")
    night.set_config(input={"directory": "raw"})
    _text_file(night)
    _focus(night)
    result = CliRunner().invoke(main, ["validate", str(night.config)])
    assert result.exit_code == 1, result.output
    assert "notes.fits" in result.output and "focus_001.fits" in result.output
    assert yaml.safe_load(night.config.read_text())["input"] == {"directory": "raw"}
