"""Writing a calibrated light: values exact, the caller's arrays untouched, no frame-sized copy."""

from __future__ import annotations

import hashlib
import tracemalloc

import numpy as np
from astropy.io import fits

from ccdflow.io.products import write_calibrated


def test_a_light_is_written_exactly_without_a_big_endian_copy(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.normal(100.0, 5.0, (512, 512)).astype(np.float32)
    error = rng.uniform(1.0, 2.0, (512, 512)).astype(np.float32)
    mask = (rng.random((512, 512)) < 0.01).astype(np.uint8)
    before = image.copy(), error.copy()
    header = fits.Header([("FILTER", "V"), ("EXPTIME", 30.0)])
    write_calibrated(tmp_path / "warm.fits", image=image, error=error, header=header, mask=mask)
    tracemalloc.start()
    write_calibrated(tmp_path / "a.fits", image=image, error=error, header=header, mask=mask)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < image.nbytes / 4  # a converted copy of the image alone would be 1 MiB
    np.testing.assert_array_equal(image, before[0])  # swapped for the write and back
    np.testing.assert_array_equal(error, before[1])
    with fits.open(tmp_path / "a.fits") as hdus:
        np.testing.assert_array_equal(hdus[0].data, before[0])
        np.testing.assert_array_equal(hdus["ERROR"].data, before[1])
        np.testing.assert_array_equal(hdus["MASK"].data, mask)
        assert hdus[0].header["FILTER"] == "V"


def test_a_read_only_array_is_written_too(tmp_path):
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    image.flags.writeable = False
    write_calibrated(tmp_path / "a.fits", image=image, error=image, header=fits.Header())
    np.testing.assert_array_equal(fits.getdata(tmp_path / "a.fits"), np.arange(12).reshape(3, 4))


def test_the_digest_taken_while_writing_is_the_files_and_costs_no_copy(tmp_path):
    rng = np.random.default_rng(4)
    image = rng.normal(100.0, 5.0, (512, 512)).astype(np.float32)
    error = rng.uniform(1.0, 2.0, (512, 512)).astype(np.float32)
    mask = (rng.random((512, 512)) < 0.01).astype(np.uint8)
    before = image.copy()
    header = fits.Header([("FILTER", "V"), ("EXPTIME", 30.0)])
    write_calibrated(tmp_path / "plain.fits", image=image, error=error, header=header, mask=mask)
    digest = hashlib.sha1()
    tracemalloc.start()
    write_calibrated(tmp_path / "hashed.fits", image=image, error=error, header=header, mask=mask,
                     sha1=digest)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    written = (tmp_path / "hashed.fits").read_bytes()
    assert written == (tmp_path / "plain.fits").read_bytes()  # the same file either way
    assert digest.hexdigest() == hashlib.sha1(written).hexdigest()
    assert peak < image.nbytes / 4
    np.testing.assert_array_equal(image, before)
    assert not list(tmp_path.glob(".ccdflow-*"))  # no temporary left


def test_a_raw_header_of_plain_cards_is_written_the_same_without_astropys_check(tmp_path):
    raw = fits.Header([("EXPTIME", 30.0, "[s]"), ("OBJECT", "M 67"), ("DATE-OBS", "2018-08-10"),
                       ("GAIN", 1.5), ("FLAG", True)])
    raw["HISTORY"] = "observed"
    raw["LONGTEXT"] = "x" * 100  # a long string: CONTINUE cards, not a plain form
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    written = {}
    for checked in (True, False):
        path = tmp_path / f"{checked}.fits"
        write_calibrated(path, image=image, error=image, header=raw, raw_cards_checked=checked)
        written[checked] = path.read_bytes()
    assert written[True] == written[False]


def test_a_lowercase_raw_keyword_is_fixed_not_fatal(tmp_path):
    raw = fits.Header.fromstring("exptime =                 30.0".ljust(80))
    image = np.ones((3, 4), np.float32)
    write_calibrated(tmp_path / "a.fits", image=image, error=image, header=raw)
    assert fits.getheader(tmp_path / "a.fits")["EXPTIME"] == 30.0
