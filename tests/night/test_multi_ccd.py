"""Files holding several CCDs (DECam-style: an empty primary, one extension per CCD, each read
through two amplifiers described by lettered keys): one product per CCD, masters per CCD."""

import json

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.night.config import NightConfig
from ccdflow.night.run import plan_night, reduce_night

NY, NX, NOVER = 40, 24, 6  # each amplifier's data, and its overscan columns
CCDS = {  # name -> per amplifier (A, B): pedestal ADU, gain e-/ADU, read noise e-
    "N4": ((1000.0, 1.5, 5.0), (1030.0, 2.5, 6.0)),
    "S4": ((900.0, 3.0, 4.0), (960.0, 1.2, 7.0)),
}
RESPONSE = {"N4": 1.0, "S4": 0.8}  # each CCD's flat response, different on purpose


def _ccd_image(rng, name, electrons):
    """One CCD: amp A's data then overscan, amp B's overscan then its data read mirrored."""
    (pa, ga, ra), (pb, gb, rb) = CCDS[name]
    left, right = electrons[:, :NX], electrons[:, NX:]
    data_a = pa + (rng.poisson(left) + rng.normal(0, ra, left.shape)) / ga
    data_b = pb + (rng.poisson(right) + rng.normal(0, rb, right.shape)) / gb
    over_a = pa + rng.normal(0, ra / ga, (NY, NOVER))
    over_b = pb + rng.normal(0, rb / gb, (NY, NOVER))
    raw = np.hstack([data_a, over_a, over_b, data_b[:, ::-1]])
    return np.round(raw).astype(np.uint16)


def _ccd_header(name, kind, exptime):
    (_, ga, ra), (_, gb, rb) = CCDS[name]
    width = 2 * (NX + NOVER)
    return fits.Header([
        ("CCDNAME", name), ("EXTNAME", name), ("IMAGETYP", kind), ("EXPTIME", exptime),
        ("FILTER", "r"), ("CCDSUM", "1 1"),
        ("DATASECA", f"[1:{NX},1:{NY}]"), ("BIASSECA", f"[{NX + 1}:{NX + NOVER},1:{NY}]"),
        ("DETSECA", f"[1:{NX},1:{NY}]"), ("GAINA", ga), ("RDNOISEA", ra),
        ("BIASSECB", f"[{NX + NOVER + 1}:{NX + 2 * NOVER},1:{NY}]"),
        ("DATASECB", f"[{NX + 2 * NOVER + 1}:{width},1:{NY}]"),
        ("DETSECB", f"[{2 * NX}:{NX + 1},1:{NY}]"), ("GAINB", gb), ("RDNOISEB", rb),
    ])


def _write(path, rng, kind, exptime, level):
    hdus = [fits.PrimaryHDU(header=fits.Header([("IMAGETYP", kind), ("EXPTIME", exptime),
                                                ("FILTER", "r")]))]
    for name in CCDS:
        electrons = np.full((NY, 2 * NX), level * RESPONSE[name])
        hdus.append(fits.ImageHDU(_ccd_image(rng, name, electrons), _ccd_header(name, kind, exptime)))
    fits.HDUList(hdus).writeto(path)


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    root = tmp_path_factory.mktemp("mosaic")
    rng = np.random.default_rng(7)
    lines = []
    for i in range(3):
        _write(root / f"bias{i}.fits", rng, "zero", 0.0, 0.0)
        lines.append(f"bias, bias{i}.fits")
    for i in range(3):
        _write(root / f"flat{i}.fits", rng, "flat", 5.0, 20000.0)
        lines.append(f"flat, flat{i}.fits")
    _write(root / "obj.fits", rng, "object", 60.0, 3000.0)
    lines.append("light, obj.fits")
    (root / "night.csv").write_text("\n".join(lines) + "\n")
    config = NightConfig.from_dict({"input": {"filelist": "night.csv"}, "output": "out",
                                    "cluster": {"scheduler": "synchronous"}}, base=root)
    return root, reduce_night(config, echo=lambda *a: None, progress=False)


def test_one_product_and_one_set_of_masters_per_ccd(night):
    root, report = night
    assert report.ok, report.failures
    for name in CCDS:
        for master in (f"bias_{name}", f"flat_r_{name}"):
            assert (root / "out" / "masters" / f"{master}.fits").is_file()
        header = fits.getheader(root / "out" / "lights" / f"obj_{name}.fits")
        assert header["DETNAME"] == name and header["NAMPS"] == 2
        assert [header["GAIN1"], header["GAIN2"]] == [CCDS[name][0][1], CCDS[name][1][1]]
    frames = json.loads((root / "out" / "report.json").read_text())["frames"]
    assert {f"{root / 'obj.fits'}[{name}]" for name in CCDS} <= set(frames)
    # each CCD's flat is bias-corrected by that CCD's bias, as its lights are
    config = NightConfig.from_dict({"input": {"filelist": "night.csv"}, "output": "out"}, base=root)
    needs = {m.name: m.needs for m in plan_night(config).masters}
    assert all(needs[f"flat_r_{name}"] == (f"bias_{name}",) for name in CCDS)


@pytest.mark.parametrize("name", list(CCDS))
def test_each_ccd_is_flat_fielded_to_its_own_level_with_honest_errors(night, name):
    root, _ = night
    with fits.open(root / "out" / "lights" / f"obj_{name}.fits") as hdul:
        image, error = hdul[0].data, hdul["ERROR"].data
    # flat-fielded (flat normalised over this CCD), in ADU of amplifier A's scale
    flat = fits.getdata(root / "out" / "masters" / f"flat_r_{name}.fits")
    assert image.shape == (NY, 2 * NX) and np.isfinite(image).all()
    (_, ga, _), (_, gb, _) = CCDS[name]
    # raw/flat: electrons/g / (resp/g / m) = electrons / resp * m, m the flat's mean of resp/g
    m = np.mean(np.r_[np.full(NX, 1 / ga), np.full(NX, 1 / gb)])
    truth = 3000.0 * RESPONSE[name] * m
    pulls = (image - truth) / error
    assert abs(pulls.mean()) < 0.15 and 0.85 < pulls.std() < 1.15
    assert abs(np.median(flat) - 1) < 0.5
