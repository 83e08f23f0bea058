"""Multi-amplifier calibration against known truth: the night of `amplifier_camera`, reduced.

Every night is configured with the files and the output only (the layout, gains and read noises
come from the headers), cosmic-ray detection off, plus the one choice each test is about.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.stats import sigma_clipped_stats

from amplifier_camera import (
    AMP,
    AMPS,
    DARK_RATE,
    N_BIAS,
    N_LIGHT,
    SHAPE,
    SKIES,
    STARS,
    T_LIGHT,
    Night,
    Scene,
    assembled,
    write_night,
)
from ccdflow.night import load_config, reduce_night


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Night:
    return write_night(tmp_path_factory.mktemp("ampnight"))


MEAN = {"method": "mean", "clip": "none"}


def _reduce(night: Night, name: str, *, layout: str = "extensions", flats: bool = True,
            units: str = "adu", combine: dict | None = None, regimes=("faint", "bright")) -> Path:
    """Reduce the night with a config naming only the files, the output and the choices given."""
    folder = night.folder / name
    folder.mkdir()
    rows = [f"{kind}, {night.folder / layout / stem}.fits"
            for stem, (kind, _, _) in night.raws.items()
            if (flats or kind != "flat") and (kind != "light" or stem.rstrip("0123456789") in regimes)]
    (folder / "night.csv").write_text("\n".join(rows) + "\n")
    # cosmic-ray detection is off: it is not what is tested here, and it costs most of the time
    config = {"input": {"filelist": "night.csv"}, "output": "out",
              "cluster": {"scheduler": "synchronous"}, "quality": {"cosmic_rays": "off"}}
    if units != "adu":
        config["calibration"] = {"units": units}
    if combine:
        config["combine"] = combine
    (folder / "night.yaml").write_text(yaml.safe_dump(config))
    report = reduce_night(load_config(folder / "night.yaml"), echo=lambda *_: None,
                          progress=False)
    assert report.ok, report.failures
    return folder / "out"


@pytest.fixture(scope="module")
def reduced(night):
    """Each night reduced once: ``reduced(name, **choices)``."""
    done: dict[str, Path] = {}

    def get(name: str, **choices) -> Path:
        if name not in done:
            done[name] = _reduce(night, name, **choices)
        return done[name]

    return get


NIGHTS = {
    # masters combined as plain means, so that a numpy mean is their exact reference
    "adu": dict(combine={"bias": MEAN, "dark": MEAN, "flat": {**MEAN, "scale": "median"}}),
    "adu_lettered": dict(layout="lettered", regimes=("faint",),
                         combine={"bias": MEAN, "dark": MEAN, "flat": {**MEAN, "scale": "median"}}),
    # the default combination (ccdclip with each amplifier's noise model)
    "electron": dict(units="electron"),
    "adu_no_flat": dict(flats=False, regimes=("bright",)),
    "electron_no_flat": dict(flats=False, regimes=("bright",), units="electron"),
}


def _night(reduced, name: str) -> Path:
    return reduced(name, **NIGHTS[name])


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, fits.Header]:
    with fits.open(path) as hdul:
        mask = hdul["MASK"].data.copy() if "MASK" in hdul else None
        return (hdul[0].data.astype(np.float64), hdul["ERROR"].data.astype(np.float64), mask,
                hdul[0].header.copy())


def _reference_masters(night: Night) -> dict[str, np.ndarray]:
    """The masters of section 5 with plain means: bias, dark rate, flat normalised to 1."""
    frames = {kind: [(t, assembled(b)) for k, t, b in night.raws.values() if k == kind]
              for kind in ("bias", "dark", "flat")}
    bias = np.mean([f for _, f in frames["bias"]], axis=0)
    dark = np.mean([(f - bias) / t for t, f in frames["dark"]], axis=0)
    flats = [f - bias - t * dark for t, f in frames["flat"]]
    flat = np.mean([f / np.median(f) for f in flats], axis=0)
    return {"bias": bias, "dark": dark, "flat": flat / sigma_clipped_stats(flat, sigma=3.0,
                                                                          maxiters=5)[0]}


def _flat_level(scene: Scene, *, electrons: bool) -> float:
    """``m``: a flat-fielded light is ``m`` times the true electrons (the flat's clipped mean)."""
    flat = scene.response if electrons else scene.response / scene.gain
    return float(sigma_clipped_stats(flat, sigma=3.0, maxiters=5)[0])


def _truth(scene: Scene, regime: str, *, electrons: bool) -> np.ndarray:
    return _flat_level(scene, electrons=electrons) * (SKIES[regime] + scene.stars)


def _pulls(out: Path, night: Night, regime: str, *, electrons: bool) -> dict[str, np.ndarray]:
    """(value - truth) / error of every unflagged star-free pixel of the regime's lights, per amp."""
    truth = _truth(night.scene, regime, electrons=electrons)
    pulls: dict[str, list] = {amp.name: [] for amp in AMPS}
    for i in range(N_LIGHT):
        image, error, mask, _ = _read(out / "lights" / f"{regime}{i}.fits")
        good = (mask == 0) & night.scene.star_free
        pull = (image - truth) / error
        for amp in AMPS:
            pulls[amp.name].append(pull[amp.block][good[amp.block]])
    return {name: np.concatenate(values) for name, values in pulls.items()}


def _master(out: Path, name: str) -> tuple[np.ndarray, np.ndarray, fits.Header]:
    image, error, _, header = _read(out / "masters" / f"{name}.fits")
    return image, error, header


def test_masters_equal_a_numpy_reference_of_the_per_amplifier_procedure(night, reduced):
    out = _night(reduced, "adu")
    reference = _reference_masters(night)
    for kind, name, atol in (("bias", "bias", 1e-3), ("dark", "dark", 1e-5),
                             ("flat", "flat_V", 1e-5)):
        image, _, _ = _master(out, name)
        assert image.shape == SHAPE
        np.testing.assert_allclose(image, reference[kind], rtol=1e-5, atol=atol, err_msg=kind)
    # and the reference is the truth: each amplifier's bias pattern, dark rate in its ADU
    scene = night.scene
    for amp in AMPS:
        # a mean of N_BIAS frames of read noise and rounding
        residual = (reference["bias"] - scene.bias)[amp.block]
        sigma = np.sqrt(((amp.read_noise / amp.gain) ** 2 + 1 / 12) / N_BIAS)
        assert abs(residual.mean()) < 0.1 * sigma and abs(residual.std() / sigma - 1) < 0.05
        dark = reference["dark"][amp.block] * amp.gain
        assert abs(np.median(dark) - DARK_RATE) < 0.01, amp.name


def _amp_pull_stats(pulls: np.ndarray) -> tuple[float, float]:
    return float(np.mean(pulls)), float(np.std(pulls))


@pytest.mark.parametrize("units", ["adu", "electron"])
@pytest.mark.parametrize("regime", ["faint", "bright"])
def test_pulls_of_calibrated_lights_per_amplifier(night, reduced, units, regime):
    out = _night(reduced, "adu" if units == "adu" else "electron")
    pulls = _pulls(out, night, regime, electrons=units == "electron")
    for amp in AMPS:
        mean, std = _amp_pull_stats(pulls[amp.name])
        print(f"pulls {units} {regime} {amp.name}: n={pulls[amp.name].size} "
              f"mean={mean:+.4f} std={std:.4f}")
        # nearly every star-free pixel is unflagged: the bad-pixel mask takes no amplifier's
        # gain step for defects
        star_free = np.count_nonzero(night.scene.star_free[amp.block])
        assert pulls[amp.name].size > 0.99 * N_LIGHT * star_free, amp.name
        assert abs(std - 1) < 0.03, (amp.name, std)
        assert abs(mean) < 0.03, (amp.name, mean)


def test_the_regimes_are_read_noise_and_poisson_dominated(night):
    for amp in AMPS:
        faint = SKIES["faint"] + DARK_RATE * T_LIGHT
        assert amp.read_noise ** 2 > 2 * faint
        assert SKIES["bright"] > 40 * amp.read_noise ** 2


@pytest.mark.parametrize("units", ["adu", "electron"])
def test_star_fluxes_are_recovered(night, reduced, units):
    out = _night(reduced, "adu" if units == "adu" else "electron")
    m = _flat_level(night.scene, electrons=units == "electron")
    for regime, sky in SKIES.items():
        image, error, _, _ = _read(out / "lights" / f"{regime}0.fits")
        for row, col, flux in STARS:
            box = np.s_[row - 7:row + 8, col - 7:col + 8]
            measured = np.sum(image[box] - m * sky)
            sigma = np.sqrt(np.sum(error[box] ** 2))
            assert abs(measured - m * flux) < 4 * sigma, (regime, row, col, measured, m * flux)


def _seam_z(image: np.ndarray, k: int = 5) -> list[float]:
    """Step across each amplifier seam, over its standard error: k lines each side."""
    def z(a, b):
        a, b = a[np.isfinite(a)], b[np.isfinite(b)]
        se = np.hypot(a.std(ddof=1) / np.sqrt(a.size), b.std(ddof=1) / np.sqrt(b.size))
        return float((a.mean() - b.mean()) / se)

    out = []
    for half in (slice(0, AMP), slice(AMP, 2 * AMP)):
        out.append(z(image[half, AMP - k:AMP], image[half, AMP:AMP + k]))  # left | right
        out.append(z(image[AMP - k:AMP, half], image[AMP:AMP + k, half]))  # below | above
    return out


def _mean_light(out: Path, regime: str) -> tuple[np.ndarray, fits.Header]:
    total, count = np.zeros(SHAPE), np.zeros(SHAPE)
    for i in range(N_LIGHT):
        image, _, mask, header = _read(out / "lights" / f"{regime}{i}.fits")
        total += np.where(mask == 0, image, 0.0)
        count += mask == 0
    return np.where(count > 0, total / np.maximum(count, 1), np.nan), header


@pytest.mark.parametrize("name", ["adu", "electron"])
def test_flat_fielded_lights_have_no_step_at_the_amplifier_seams(night, reduced, name):
    out = _night(reduced, name)
    image, header = _mean_light(out, "bright")
    steps = _seam_z(image)
    print(f"seam steps {name} (sigma): {np.round(steps, 2).tolist()}")
    assert max(abs(s) for s in steps) < 4, steps
    assert header["BUNIT"] == name
    with fits.open(out / "lights" / "bright0.fits") as hdul:
        assert hdul["ERROR"].header["BUNIT"] == name
    # the raw frames themselves have steps of many sigma at the same seams
    raw = np.mean([assembled(night.raws[f"bright{i}"][2]) for i in range(N_LIGHT)], axis=0)
    assert max(abs(s) for s in _seam_z(raw)) > 50


def test_electrons_without_flats_are_adu_times_each_amplifiers_gain(night, reduced):
    adu, electron = _night(reduced, "adu_no_flat"), _night(reduced, "electron_no_flat")
    for i in range(N_LIGHT):
        a_image, a_error, a_mask, a_header = _read(adu / "lights" / f"bright{i}.fits")
        e_image, e_error, e_mask, e_header = _read(electron / "lights" / f"bright{i}.fits")
        assert (a_header["BUNIT"], e_header["BUNIT"]) == ("adu", "electron")
        for amp in AMPS:
            block = amp.block
            np.testing.assert_allclose(e_image[block], a_image[block] * amp.gain, rtol=2e-6,
                                       atol=2e-3 * amp.gain, err_msg=amp.name)
            np.testing.assert_allclose(e_error[block], a_error[block] * amp.gain, rtol=1e-5,
                                       err_msg=amp.name)
    bias_a, _, _ = _master(adu, "bias")
    bias_e, _, _ = _master(electron, "bias")
    np.testing.assert_allclose(bias_e, bias_a * night.scene.gain, rtol=1e-5, atol=1e-3)


def test_both_header_layouts_give_the_same_calibrated_lights(night, reduced):
    ext, let = _night(reduced, "adu"), _night(reduced, "adu_lettered")
    for regime in ("faint",):
        for i in range(N_LIGHT):
            e_image, e_error, e_mask, _ = _read(ext / "lights" / f"{regime}{i}.fits")
            l_image, l_error, l_mask, _ = _read(let / "lights" / f"{regime}{i}.fits")
            np.testing.assert_allclose(l_image, e_image, rtol=1e-6, atol=1e-4)
            np.testing.assert_allclose(l_error, e_error, rtol=1e-6)
            np.testing.assert_array_equal(l_mask, e_mask)


def test_default_masters_in_electrons_match_the_truth_within_their_errors(night, reduced):
    out = _night(reduced, "electron")
    scene = night.scene
    truth = {"bias": scene.bias * scene.gain, "dark": scene.dark,
             "flat_V": scene.response / _flat_level(scene, electrons=True)}
    for name, expected in truth.items():
        image, error, header = _master(out, name)
        assert header["BUNIT"] == ("" if name.startswith("flat") else "electron"), name
        pull = (image - expected) / error
        for amp in AMPS:
            p = pull[amp.block]
            p = p[np.isfinite(p) & (scene.dark[amp.block] < 1)]  # hot pixels aside
            print(f"master {name} {amp.name}: mean={p.mean():+.3f} std={p.std():.3f}")
            # a median of 5-8 frames: the error's sqrt(pi/2) is the large-N factor, a little high
            assert abs(p.mean()) < 0.1 and abs(p.std() - 1) < 0.06, (name, amp.name)
