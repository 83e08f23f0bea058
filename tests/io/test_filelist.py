"""Frame lists: the CSV file list and the scan of a folder, every bad line named by file:LINE."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.errors import ConfigError
from ccdflow.io.filelist import ListedFrame, drop_duplicates, read_filelist, scan_directory

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _write(folder: Path, text: str, name: str = "night.csv") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _fits(path: Path, **cards) -> Path:
    header = fits.Header()
    for key, value in cards.items():
        header[key] = value
    fits.PrimaryHDU(np.zeros((4, 6), dtype=np.uint16), header=header).writeto(path)
    return path


def _line(path: Path, number: int) -> str:
    return "^" + re.escape(f"{path}:{number}: ")


# --- read_filelist --------------------------------------------------------------------------------


def test_listed_paths_are_resolved_as_path_resolve_does(tmp_path):
    real = tmp_path / "data" / "raw"
    real.mkdir(parents=True)
    for name in ("a.fits", "target.fits"):
        _fits(real / name)
    (tmp_path / "night").mkdir()
    (tmp_path / "night" / "raw").symlink_to(real)  # a linked folder
    (real / "b.fits").symlink_to(real / "target.fits")  # a linked file
    lines = ["bias, raw/a.fits", "bias, raw/b.fits", "bias, raw/../raw/a.fits",
             f"bias, {tmp_path}/night/raw/b.fits", "bias, raw/missing.fits", "bias, ./raw/a.fits"]
    listed = _write(tmp_path / "night", "\n".join(lines) + "\n")
    frames = read_filelist(listed)
    expected = [(tmp_path / "night" / line.split(", ")[1]).resolve() for line in lines]
    assert [f.path for f in frames] == expected
    assert frames[1].path == real / "target.fits" and frames[0].path == real / "a.fits"


def test_two_and_three_columns(tmp_path):
    path = _write(tmp_path, "bias, raw/b1.fits\nlight, raw/l1.fits, 2\nflat,raw/f1.fits,0\n")
    frames = read_filelist(path)
    assert frames == [
        ListedFrame("bias", tmp_path / "raw" / "b1.fits", 0, f"{path}:1"),
        ListedFrame("light", tmp_path / "raw" / "l1.fits", 2, f"{path}:2"),
        ListedFrame("flat", tmp_path / "raw" / "f1.fits", 0, f"{path}:3"),
    ]


def test_whitespace_comments_and_blank_lines(tmp_path):
    path = _write(tmp_path, "# type, path, hdu\n\n   \n  bias ,\t raw/b 1.fits  \n"
                            "   # indented comment, with, commas\n\tDARK , raw/d.fits , 1 \n"
                            "light, raw/l.fits,\n")
    frames = read_filelist(path)
    assert [(f.type, f.path.name, f.hdu) for f in frames] == [
        ("bias", "b 1.fits", 0), ("dark", "d.fits", 1), ("light", "l.fits", 0)]
    assert [f.origin for f in frames] == [f"{path}:4", f"{path}:6", f"{path}:7"]


def test_paths_relative_to_the_list_folder(tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    absolute = tmp_path / "abs" / "x.fits"
    path = _write(lists, f"bias, ../raw/b.fits\nbias, {absolute}\nbias, sub/c.fits\n")
    monkeypatch.chdir(tmp_path / "lists")
    frames = read_filelist(Path("night.csv"))  # a relative list path works too
    assert [f.path for f in frames] == [tmp_path / "raw" / "b.fits", absolute,
                                        lists / "sub" / "c.fits"]
    assert all(f.path.is_absolute() for f in frames)
    assert path.exists()


@pytest.mark.parametrize(("spelling", "canonical"), [
    ("zero", "bias"), ("Zero", "bias"), ("object", "light"), ("science", "light"),
    ("comp", "arc"), ("lamp", "arc"), ("sky flat", "flat"), ("domeflat", "flat"), ("ARC", "arc"),
])
def test_type_synonyms(tmp_path, spelling, canonical):
    path = _write(tmp_path, f"{spelling}, raw/x.fits\n")
    assert read_filelist(path)[0].type == canonical


def test_a_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "night.csv"
    path.write_bytes("bias, raw/b.fits\n".encode("utf-8-sig"))
    assert read_filelist(path)[0].type == "bias"


@pytest.mark.parametrize(("text", "number", "reason"), [
    ("bias, raw/b.fits\nlight\n", 2, "expected 'type, path"),
    ("# header\nbias, raw/b.fits, 0, extra\n", 2, "expected 'type, path"),
    ("bias, raw/b.fits\n\nlight,\n", 3, "expected 'type, path"),
    ("bias, raw/b.fits\nflats, raw/f.fits\n", 2, "unknown frame type 'flats'"),
    ("bias, raw/b.fits\nbias, raw/c.fits\nlight, raw/l.fits, one\n", 3, "HDU must be an integer"),
    ("light, raw/l.fits, 1.5\n", 1, "HDU must be an integer"),
    ("# a\n# b\n# c\nlight, raw/l.fits, -1\n", 4, "HDU must be >= 0"),
])
def test_bad_lines_are_named_by_file_and_line(tmp_path, text, number, reason):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=_line(path, number) + re.escape(reason)):
        read_filelist(path)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n\n# and another\n"])
def test_an_empty_list_is_an_error(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: the file list names no frames")):
        read_filelist(path)


def test_a_missing_list_is_named(tmp_path):
    path = tmp_path / "nothere.csv"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: cannot read the file list")):
        read_filelist(path)


def test_a_binary_list_is_named(tmp_path):
    path = tmp_path / "night.csv"
    path.write_bytes(b"bias, \xff\xfe.fits\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: the file list is not UTF-8")):
        read_filelist(path)


def test_the_shipped_example_list():
    frames = read_filelist(CONFIGS / "night.csv")
    types = {f.type for f in frames}
    assert {"bias", "dark", "flat", "light", "arc"} <= types
    assert all(f.path.is_relative_to(CONFIGS) for f in frames)
    assert [f.hdu for f in frames if f.hdu] == [1]
    assert sum(f.type == "bias" for f in frames) >= 3


# --- scan_directory -------------------------------------------------------------------------------


def test_scan_classifies_by_imagetyp(tmp_path):
    _fits(tmp_path / "c.fits", IMAGETYP="Light Frame")
    _fits(tmp_path / "a.fits", IMAGETYP="zero")
    _fits(tmp_path / "b.fit", IMAGETYP="FLAT")
    _fits(tmp_path / "d.FITS", OBSTYPE="DARK")  # OBSTYPE when there is no IMAGETYP
    _fits(tmp_path / "e.fts", IMAGETYP="comp", OBSTYPE="BIAS")  # IMAGETYP wins
    frames = scan_directory(tmp_path)
    assert [(f.path.name, f.type, f.hdu) for f in frames] == [
        ("a.fits", "bias", 0), ("b.fit", "flat", 0), ("c.fits", "light", 0),
        ("d.FITS", "dark", 0), ("e.fts", "arc", 0)]
    assert all(f.path.is_absolute() for f in frames)


def test_scan_ignores_other_files(tmp_path):
    _fits(tmp_path / "a.fits", IMAGETYP="BIAS")
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "night.csv").write_text("bias, a.fits\n")
    (tmp_path / "preview.png").write_bytes(b"\x89PNG")
    (tmp_path / "sub.fits").mkdir()  # a folder is not scanned into
    sub = tmp_path / "deeper"
    sub.mkdir()
    _fits(sub / "x.fits", IMAGETYP="LIGHT")  # not recursive
    assert [f.path.name for f in scan_directory(tmp_path)] == ["a.fits"]


def test_scan_reads_gzip_frames(tmp_path):
    plain = _fits(tmp_path / "a.fits", IMAGETYP="DARK")
    (tmp_path / "b.fits.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    assert [(f.path.name, f.type) for f in scan_directory(tmp_path)] == [("b.fits.gz", "dark")]


def test_scan_a_frame_without_a_type_card_is_listed_as_ignored(tmp_path):
    _fits(tmp_path / "a.fits", IMAGETYP="BIAS")
    untyped = _fits(tmp_path / "b.fits", OBJECT="M31")
    frames = scan_directory(tmp_path)
    assert [f.type for f in frames] == ["bias", ""]
    assert frames[1].path == untyped.resolve() and frames[1].error is None
    assert frames[1].ignored == "no IMAGETYP or OBSTYPE card to tell the frame type"


def test_scan_an_unknown_type_is_listed_as_ignored(tmp_path):
    odd = _fits(tmp_path / "a.fits", IMAGETYP="FOCUS")
    (frame,) = scan_directory(tmp_path)
    assert frame.path == odd.resolve() and "unknown frame type 'FOCUS'" in frame.ignored


def test_scan_an_unreadable_frame_is_listed_with_its_error(tmp_path):
    _fits(tmp_path / "a.fits", IMAGETYP="BIAS")
    bad = tmp_path / "b.fits"
    bad.write_bytes(b"definitely not FITS" * 200)
    frames = scan_directory(tmp_path)
    assert frames[0].type == "bias" and frames[0].error is None
    assert frames[1].type == "" and frames[1].ignored is None
    assert frames[1].error.startswith("FrameReadError: ") and str(bad) in frames[1].error


def test_drop_duplicates_keeps_the_first_listing_by_file_and_hdu(tmp_path):
    path = _fits(tmp_path / "a.fits", IMAGETYP="BIAS")
    link = tmp_path / "link.fits"
    link.symlink_to(path)
    frames = [ListedFrame("bias", path, 0, "l:1"), ListedFrame("flat", link, 0, "l:2"),
              ListedFrame("bias", path, 1, "l:3"), ListedFrame("bias", path, 0, "l:4")]
    kept, warnings = drop_duplicates(frames)
    assert [f.origin for f in kept] == ["l:1", "l:3"]
    assert [w.split(":")[1] for w in warnings] == ["2", "4"]
    assert all("already listed as bias at l:1; counted once" in w for w in warnings)


def test_scan_a_missing_folder(tmp_path):
    missing = tmp_path / "nothere"
    with pytest.raises(ConfigError, match=re.escape(f"{missing}: not a folder")):
        scan_directory(missing)


def test_scan_a_folder_without_frames(tmp_path):
    (tmp_path / "readme.txt").write_text("empty night")
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}: no FITS frames found")):
        scan_directory(tmp_path)
