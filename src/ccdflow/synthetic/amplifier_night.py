"""A whole synthetic night of a multi-amplifier CCD on disk, with its truth saved beside the frames.

Frames are planned, named, dated and typed exactly as in a single-amplifier night (`night_plan`,
`observation_cards`), so the night planner sorts both alike; the pixels come from an
`AmplifierCamera`. The truth is written to ``truth.json`` (numbers) and ``truth.npz`` (images).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from ccdflow.array.detector import Detector
from ccdflow.synthetic.amplifiers import AmplifierCamera
from ccdflow.synthetic.frames import FRAME_KINDS, Instrument, make_truth, observation_cards, star_field
from ccdflow.synthetic.night import PlannedFrame, night_plan, write_filelist

__all__ = ["AmplifierExposure", "AmplifierNight", "AmplifierNightTruth", "write_amplifier_night"]

TRUTH_JSON, TRUTH_NPZ = "truth.json", "truth.npz"


@dataclass(frozen=True, kw_only=True)
class AmplifierExposure:
    """What one raw frame of the night was exposed to.

    Attributes
    ----------
    kind : {"bias", "dark", "flat", "light"}
        Frame type.
    exptime : float
        Seconds (0 for a bias).
    filter : str
        Flats and lights; ``""`` otherwise.
    level : float
        Flats: illumination in electrons per pixel before the flat response; 0 otherwise.
    offsets : dict of str to float
        Per amplifier, ADU added to its pedestal in this frame (data and overscan alike).

    Examples
    --------
    >>> AmplifierExposure(kind="flat", exptime=5.0, filter="V", level=2e4, offsets={"A": 0.5}).level
    20000.0
    """

    kind: str
    exptime: float
    filter: str
    level: float
    offsets: dict[str, float]

    def __post_init__(self) -> None:
        if self.kind not in FRAME_KINDS:
            raise ValueError(f"kind must be one of {FRAME_KINDS}, not {self.kind!r}")
        if self.exptime < 0 or self.level < 0:
            raise ValueError(f"exptime and level must be >= 0, not {self.exptime!r}, {self.level!r}")


@dataclass(frozen=True, kw_only=True)
class AmplifierNightTruth:
    """The known truth of a synthetic multi-amplifier night, per amplifier and per assembled pixel.

    Attributes
    ----------
    camera : AmplifierCamera
        Geometry and layout of the raw files.
    gain, read_noise, pedestal : dict of str to float
        Per amplifier: e-/ADU, electrons, and the bias level in ADU (before each frame's offset).
    bias : numpy.ndarray
        Fixed bias structure above the pedestal, ADU of the pixel's amplifier.
    dark_rate : numpy.ndarray
        Dark current, electrons per second (hot pixels included).
    flats : dict of str to numpy.ndarray
        Per filter, the pixel response (mean 1 over the detector, seamless across amplifiers).
    light_rate : numpy.ndarray
        Sky plus stars, electrons per second before the flat response.
    sky_rate : float
        The sky part of `light_rate`, electrons per second per pixel.
    exposures : dict of str to AmplifierExposure
        Per raw file stem (``"light_V_000"``).

    Notes
    -----
    Expected electrons of a frame: ``dark_rate t`` plus ``flat level`` (flats) or ``flat light_rate
    t`` (lights). Its expected overscan-corrected assembled image in ADU is ``bias + electrons /
    gain`` with each pixel's amplifier gain (`adu`). Images are float64 of ``camera.shape``.
    """

    camera: AmplifierCamera
    gain: dict[str, float]
    read_noise: dict[str, float]
    pedestal: dict[str, float]
    bias: np.ndarray
    dark_rate: np.ndarray
    flats: dict[str, np.ndarray]
    light_rate: np.ndarray
    sky_rate: float
    exposures: dict[str, AmplifierExposure]

    def __post_init__(self) -> None:
        names = {s.name for s in self.camera.specs}
        for field in ("gain", "read_noise", "pedestal"):
            if set(getattr(self, field)) != names:
                raise ValueError(f"{field} must name the amplifiers {sorted(names)}")
        images = {"bias": self.bias, "dark_rate": self.dark_rate, "light_rate": self.light_rate,
                  **{f"flats[{k!r}]": v for k, v in self.flats.items()}}
        for name, image in images.items():
            if np.shape(image) != self.camera.shape:
                raise ValueError(f"{name} has shape {np.shape(image)}, not {self.camera.shape}")

    @property
    def detector(self) -> Detector:
        """The `Detector` the raw headers describe."""
        return self.camera.detector

    @property
    def gain_map(self) -> np.ndarray:
        """Each assembled pixel's amplifier gain, e-/ADU."""
        return self.camera.per_pixel(self.gain)

    @property
    def read_noise_map(self) -> np.ndarray:
        """Each assembled pixel's amplifier read noise, electrons."""
        return self.camera.per_pixel(self.read_noise)

    def electrons(self, stem: str) -> np.ndarray:
        """Expected electrons per assembled pixel in the raw frame `stem` (noiseless)."""
        exp = self.exposures[stem]
        out = self.dark_rate * exp.exptime
        if exp.kind == "flat":
            out = out + self.flats[exp.filter] * exp.level
        elif exp.kind == "light":
            out = out + self.flats[exp.filter] * self.light_rate * exp.exptime
        return out

    def adu(self, stem: str) -> np.ndarray:
        """Expected assembled image of `stem` in ADU after a perfect overscan correction."""
        return self.bias + self.electrons(stem) / self.gain_map

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``truth.json`` and ``truth.npz`` into `directory`; return their paths."""
        root = Path(directory)
        keys = {name: f"flat_{i}" for i, name in enumerate(self.flats)}
        np.savez_compressed(root / TRUTH_NPZ, bias=self.bias, dark_rate=self.dark_rate,
                            light_rate=self.light_rate,
                            **{keys[k]: v for k, v in self.flats.items()})
        doc = {"camera": self.camera.to_dict(), "detector": self.detector.to_dict(),
               "gain": self.gain, "read_noise": self.read_noise, "pedestal": self.pedestal,
               "sky_rate": self.sky_rate, "flats": keys,
               "units": {"gain": "electron/adu", "read_noise": "electron", "pedestal": "adu",
                         "bias": "adu", "dark_rate": "electron/s", "light_rate": "electron/s",
                         "level": "electron", "offsets": "adu"},
               "exposures": {k: vars(v) for k, v in self.exposures.items()}}
        (root / TRUTH_JSON).write_text(json.dumps(doc, indent=1) + "\n")
        return root / TRUTH_JSON, root / TRUTH_NPZ

    @classmethod
    def load(cls, directory: str | Path) -> AmplifierNightTruth:
        """Read the truth that `save` wrote into `directory`."""
        root = Path(directory)
        doc = json.loads((root / TRUTH_JSON).read_text())
        with np.load(root / TRUTH_NPZ) as arrays:
            images = {k: arrays[k] for k in arrays.files}
        return cls(camera=AmplifierCamera.from_dict(doc["camera"]), gain=doc["gain"],
                   read_noise=doc["read_noise"], pedestal=doc["pedestal"], bias=images["bias"],
                   dark_rate=images["dark_rate"], light_rate=images["light_rate"],
                   flats={name: images[key] for name, key in doc["flats"].items()},
                   sky_rate=doc["sky_rate"],
                   exposures={k: AmplifierExposure(**v) for k, v in doc["exposures"].items()})


@dataclass(frozen=True)
class AmplifierNight:
    """A synthetic multi-amplifier night written to disk by `write_amplifier_night`.

    Attributes
    ----------
    directory : pathlib.Path
        Root folder; raw frames are under ``directory / "raw"``, the truth in ``truth.json`` and
        ``truth.npz``.
    truth : AmplifierNightTruth
        What a perfect reduction recovers.
    files : dict of str to list of pathlib.Path
        Paths per frame type (``"bias"``, ``"dark"``, ``"flat"``, ``"light"``).
    filelist : pathlib.Path
        The ``night.csv`` file list (``type, path`` lines, paths relative to its folder).

    Examples
    --------
    >>> import tempfile
    >>> night = write_amplifier_night(tempfile.mkdtemp(), filters=("V",), n_bias=1, n_dark=0,
    ...                               n_flat=0, n_light=0, amp_shape=(4, 4), n_overscan=2)
    >>> night.filelist.read_text().splitlines()[1], len(night.files["bias"])
    ('bias, raw/bias_000.fits', 1)
    """

    directory: Path
    truth: AmplifierNightTruth
    files: dict[str, list[Path]]
    filelist: Path


def write_amplifier_night(directory: str | Path, *, layout: str = "extensions",
                          n_amplifiers: int = 4, filters: Sequence[str] = ("V", "R"),
                          n_bias: int = 5, n_dark: int = 5,
                          dark_exptimes: Sequence[float] = (60.0, 120.0), n_flat: int = 5,
                          flat_exptime: float = 5.0, n_light: int = 3,
                          light_exptime: float = 120.0, binning: int = 1,
                          amp_shape: tuple[int, int] = (64, 48), n_overscan: int = 16,
                          sky: float = 300.0, n_stars: int = 8, dark_current: float = 0.5,
                          pedestal_jitter: float = 2.0, seed: int = 0) -> AmplifierNight:
    """Write a night of raw multi-amplifier frames, its ``night.csv`` and its truth.

    Parameters
    ----------
    directory : str or pathlib.Path
        Output folder, created if needed; existing files of the same names are overwritten.
    layout : {"extensions", "lettered"}
        One image extension per amplifier, or one image with lettered keys.
    n_amplifiers : {2, 4}
        Two amplifiers side by side, or a 2 x 2 grid (see `AmplifierCamera`).
    filters : sequence of str
        Filters of the flats and lights.
    n_bias, n_dark, n_flat, n_light : int
        Number of biases, of darks per exposure time, of flats and of lights per filter.
    dark_exptimes : sequence of float
        Dark exposure times in seconds.
    flat_exptime, light_exptime : float
        Flat and light exposure times in seconds.
    binning : int
        ``CCDSUM`` (x and y); the truth is per binned pixel.
    amp_shape : (rows, columns)
        Data of one amplifier in binned pixels.
    n_overscan : int
        Overscan columns per amplifier.
    sky : float
        Lights: sky in electrons per pixel per minute before the flat response.
    n_stars : int
        Lights: Gaussian stars (peaks 200-4000 electrons per minute, FWHM 2-4 px); the field is
        the same in every light, so lights stack.
    dark_current : float
        Typical dark current in electrons per second (hot pixels 50-500 times that).
    pedestal_jitter : float
        RMS in ADU of each amplifier's per-frame pedestal offset (only overscan correction
        removes it).
    seed : int
        Master seed; the truth uses it and every frame gets its own seed derived from it.

    Returns
    -------
    AmplifierNight
        Paths and truth; the truth is also in ``truth.json`` and ``truth.npz``.

    Raises
    ------
    ValueError
        An unknown layout or amplifier count, or an invalid geometry.

    Notes
    -----
    The bias structure, dark rate and flats are `make_truth`'s for a single-amplifier CCD of the
    assembled shape with gain 1 (so the dark rate is in electrons and the flat is seamless);
    flat levels are 16000-24000 electrons. Per amplifier and frame: ``raw = rint(P + o + B +
    (Poisson(E) + N(0, RN)) / g)``, overscan ``rint(P + o + N(0, RN/g))``, with ``E`` from
    `AmplifierNightTruth.electrons`. No cosmic rays, so every pixel can be checked against truth.

    Examples
    --------
    >>> import tempfile
    >>> night = write_amplifier_night(tempfile.mkdtemp(), layout="lettered", n_amplifiers=2,
    ...                               filters=("V",), n_bias=1, n_dark=1, dark_exptimes=(30.0,),
    ...                               n_flat=1, n_light=1, amp_shape=(8, 6), n_overscan=2)
    >>> [p.name for p in night.files["light"]], night.truth.camera.shape
    (['light_V_000.fits'], (8, 12))
    >>> sorted(night.truth.gain.items())
    [('A', 1.5), ('B', 2.0)]
    """
    camera = AmplifierCamera(layout=layout, n_amplifiers=n_amplifiers, amp_shape=amp_shape,
                             n_overscan=n_overscan, binning=binning)
    root = Path(directory)
    (root / "raw").mkdir(parents=True, exist_ok=True)
    plan = night_plan(filters=filters, n_bias=n_bias, n_dark=n_dark, dark_exptimes=dark_exptimes,
                      n_flat=n_flat, flat_exptime=flat_exptime, n_light=n_light,
                      light_exptime=light_exptime, seed=seed)
    truth = _night_truth(camera, plan, filters=filters, sky=sky, n_stars=n_stars,
                         dark_current=dark_current, pedestal_jitter=pedestal_jitter, seed=seed)
    files: dict[str, list[Path]] = {kind: [] for kind in FRAME_KINDS}
    for p in plan:
        exposure = truth.exposures[p.stem]
        cards = observation_cards(p.kind, exptime=exposure.exptime, filter=exposure.filter or None,
                                  object="SYNTH FIELD", seed=p.seed, date_obs=p.date_obs,
                                  detector=camera.name)
        cards += [("BUNIT", "ADU"), ("CCDSUM", f"{binning} {binning}"), ("CCD-TEMP", -100.0),
                  ("SYNSEED", p.seed)]
        rng = np.random.default_rng([p.seed, 1])  # the offsets used [p.seed, 0]
        hdul = camera.draw(truth.electrons(p.stem), bias=truth.bias, rng=rng,
                           header=fits.Header(cards), offsets=list(exposure.offsets.values()))
        path = root / "raw" / f"{p.stem}.fits"
        hdul.writeto(path, overwrite=True)
        files[p.kind].append(path)
    truth.save(root)
    return AmplifierNight(directory=root, truth=truth, files=files,
                          filelist=write_filelist(root, files))


def _night_truth(camera: AmplifierCamera, plan: list[PlannedFrame], *, filters: Sequence[str],
                 sky: float, n_stars: int, dark_current: float, pedestal_jitter: float,
                 seed: int) -> AmplifierNightTruth:
    # A single-amplifier CCD of the assembled shape with unit gain: its signatures are then in
    # electrons and continuous across the amplifier boundaries, as on a real sensor.
    signatures = make_truth(Instrument(ny=camera.shape[0], nx=camera.shape[1], gain=1.0,
                                       dark_current=dark_current), filters=filters, seed=seed)
    exposures = {p.stem: AmplifierExposure(
        kind=p.kind, exptime=float(p.kwargs.get("exptime", 0.0)), filter=p.kwargs.get("filter", ""),
        level=float(p.kwargs.get("flat_level", 0.0)),
        offsets=_offsets(camera, p.seed, pedestal_jitter)) for p in plan}
    return AmplifierNightTruth(
        camera=camera, gain={s.name: s.gain for s in camera.specs},
        read_noise={s.name: s.read_noise for s in camera.specs},
        pedestal={s.name: s.pedestal for s in camera.specs}, bias=np.array(signatures.bias),
        dark_rate=np.array(signatures.dark_rate),
        light_rate=(sky + star_field(camera.shape, "SYNTH FIELD", n_stars)) / 60.0,
        flats={k: np.array(v) for k, v in signatures.flats.items()}, sky_rate=sky / 60.0,
        exposures=exposures)


def _offsets(camera: AmplifierCamera, seed: int, rms: float) -> dict[str, float]:
    draws = np.random.default_rng([seed, 0]).normal(0.0, rms, camera.n_amplifiers)
    return {s.name: float(d) for s, d in zip(camera.specs, draws, strict=True)}
