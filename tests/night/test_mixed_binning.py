"""A night with calibrations of two binnings: masters of each, each light with its own."""

import json

from astropy.io import fits

from ccdflow.night.config import NightConfig
from ccdflow.night.run import plan_night, reduce_night
from ccdflow.synthetic import write_amplifier_night


def test_each_binning_gets_its_masters_and_its_lights_use_them(tmp_path):
    lines = []
    for binning, shape in ((1, (16, 12)), (2, (8, 6))):
        night = write_amplifier_night(tmp_path / f"b{binning}", filters=("V",), n_bias=3,
                                      n_dark=3, n_flat=3, n_light=1, binning=binning,
                                      amp_shape=shape, n_overscan=4, seed=binning)
        lines += [f"{kind}, {path}" for kind, paths in night.files.items() for path in paths]
    (tmp_path / "night.csv").write_text("\n".join(lines) + "\n")
    config = NightConfig.from_dict({"input": {"filelist": "night.csv"}, "output": "out",
                                    "quality": {"cosmic_rays": "off", "bad_pixel_mask": False},
                                    "cluster": {"scheduler": "synchronous"}}, base=tmp_path)
    # each master is corrected by the masters of its own binning, as the lights are
    needs = {m.name: m.needs for m in plan_night(config).masters}
    assert needs == {"bias_1x1": (), "bias_2x2": (), "dark_1x1": ("bias_1x1",),
                     "dark_2x2": ("bias_2x2",), "flat_V_1x1": ("bias_1x1", "dark_1x1"),
                     "flat_V_2x2": ("bias_2x2", "dark_2x2")}
    report = reduce_night(config, echo=lambda *a: None, progress=False)
    assert report.ok, report.failures
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sorted(data["masters"]) == ["bias_1x1", "bias_2x2", "dark_1x1", "dark_2x2",
                                       "flat_V_1x1", "flat_V_2x2"]
    products = {fits.getheader(p)["CCDSUM"]: fits.getheader(p) for p in
                (tmp_path / "out" / "lights").glob("*.fits")}
    assert products["1 1"]["MBIASFNM"] == "bias_1x1.fits"
    assert products["2 2"]["MBIASFNM"] == "bias_2x2.fits"
    assert products["2 2"]["MFLATFNM"] == "flat_V_2x2.fits"
