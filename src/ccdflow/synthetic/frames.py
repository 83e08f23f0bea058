"""Seeded synthetic raw CCD frames with known truth, for tests, the demo and benchmarks."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ["Instrument", "SyntheticFrame", "Truth", "make_frame", "make_truth"]

FRAME_KINDS = ("bias", "dark", "flat", "light")
_MJD_EPOCH = datetime(1858, 11, 17)


@dataclass(frozen=True, kw_only=True)
class Instrument:
    """Geometry and electronics of a synthetic single-amplifier CCD.

    Parameters
    ----------
    ny, nx : int
        Image-area rows and columns.
    n_overscan : int
        Overscan width in pixels (at least 1).
    overscan : {"columns", "rows"}
        ``"columns"``: overscan columns on the right (``x >= nx``); ``"rows"``: overscan rows first
        (``y < n_overscan``), image area below.
    gain, read_noise : float
        Gain in e-/ADU and read noise in electrons.
    pedestal, pedestal_gradient : float
        Pedestal in ADU at the first raw row, and ADU added linearly down to the last raw row
        (image area and overscan alike).
    pedestal_jitter : float
        RMS in ADU of a per-frame offset of the pedestal (only overscan correction removes it).
    bias_structure : float
        Amplitude in ADU of the fixed bias pattern (column pattern + ripple), image area only.
    dark_current, hot_pixel_fraction : float
        Typical dark current in e-/s per pixel; fraction of hot pixels (50-500 times that).
    vignetting : float
        Fractional drop of the flat-field response from the centre to the corners.
    saturation : int
        Ceiling in ADU of the stored data (at most 65535).

    Examples
    --------
    >>> inst = Instrument(ny=64, nx=64, n_overscan=8)
    >>> inst.raw_shape, inst.biassec, inst.datasec
    ((64, 72), '[65:72,1:64]', '[1:64,1:64]')
    """

    ny: int = 128
    nx: int = 128
    n_overscan: int = 16
    overscan: str = "columns"
    gain: float = 1.5
    read_noise: float = 5.0
    pedestal: float = 1000.0
    pedestal_gradient: float = 6.0
    pedestal_jitter: float = 2.0
    bias_structure: float = 3.0
    dark_current: float = 0.05
    hot_pixel_fraction: float = 0.002
    vignetting: float = 0.25
    saturation: int = 65535

    def __post_init__(self) -> None:
        checks = {
            "ny": self.ny >= 1, "nx": self.nx >= 1, "n_overscan": self.n_overscan >= 1,
            "overscan": self.overscan in ("columns", "rows"), "gain": self.gain > 0,
            "read_noise": self.read_noise >= 0, "pedestal_jitter": self.pedestal_jitter >= 0,
            "dark_current": self.dark_current >= 0, "vignetting": 0 <= self.vignetting < 1,
            "hot_pixel_fraction": 0 <= self.hot_pixel_fraction <= 1,
            "saturation": 0 < self.saturation <= 65535,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"Instrument.{name} is invalid: {getattr(self, name)!r}")

    @property
    def raw_shape(self) -> tuple[int, int]:
        """Shape ``(rows, columns)`` of the full raw frame, overscan included."""
        if self.overscan == "rows":
            return (self.ny + self.n_overscan, self.nx)
        return (self.ny, self.nx + self.n_overscan)

    @property
    def overscan_region(self) -> dict[str, int]:
        """Overscan region, 0-based half-open: ``data[ymin:ymax, xmin:xmax]``."""
        if self.overscan == "rows":
            return dict(xmin=0, xmax=self.nx, ymin=0, ymax=self.n_overscan)
        return dict(xmin=self.nx, xmax=self.nx + self.n_overscan, ymin=0, ymax=self.ny)

    @property
    def image_region(self) -> dict[str, int]:
        """Image-area region, 0-based half-open: ``data[ymin:ymax, xmin:xmax]``."""
        y0 = self.n_overscan if self.overscan == "rows" else 0
        return dict(xmin=0, xmax=self.nx, ymin=y0, ymax=y0 + self.ny)

    @property
    def biassec(self) -> str:
        """FITS ``BIASSEC`` string ``[x1:x2,y1:y2]`` (1-based, inclusive) of the overscan."""
        return _section(self.overscan_region)

    @property
    def datasec(self) -> str:
        """FITS ``DATASEC`` (and ``TRIMSEC``) string of the image area."""
        return _section(self.image_region)

    def pedestal_profile(self) -> np.ndarray:
        """Return the pedestal in ADU of each raw row (without the per-frame jitter), float64."""
        rows = self.raw_shape[0]
        return self.pedestal + self.pedestal_gradient * np.arange(rows) / max(rows - 1, 1)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain dict (YAML/JSON friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Instrument:
        """Build an instrument from `to_dict` output."""
        return cls(**values)


def _section(region: dict[str, int]) -> str:
    return f"[{region['xmin'] + 1}:{region['xmax']},{region['ymin'] + 1}:{region['ymax']}]"


def _slices(region: dict[str, int]) -> tuple[slice, slice]:
    return slice(region["ymin"], region["ymax"]), slice(region["xmin"], region["xmax"])


@dataclass(frozen=True)
class Truth:
    """Fixed detector signatures, image-area shaped ``(ny, nx)`` float64 read-only arrays.

    Attributes
    ----------
    instrument : Instrument
        The detector these signatures belong to.
    bias : numpy.ndarray
        Bias structure in ADU above the pedestal: what a perfect master bias equals after per-row
        overscan subtraction (with ``overscan="rows"`` the pedestal's row gradient remains as well).
    dark_rate : numpy.ndarray
        Dark current in ADU/s, hot pixels included.
    flats : dict of str to numpy.ndarray
        Per filter, the pixel response normalised to mean 1 over the image area.

    Examples
    --------
    >>> make_truth(Instrument(ny=8, nx=16)).dark_rate.shape
    (8, 16)
    """

    instrument: Instrument
    bias: np.ndarray
    dark_rate: np.ndarray
    flats: dict[str, np.ndarray]


def make_truth(instrument: Instrument = Instrument(), *, filters: Sequence[str] = ("V",),
               seed: int = 0) -> Truth:
    """Draw the fixed signatures (bias pattern, dark rate, flats) of a synthetic detector.

    Parameters
    ----------
    instrument : Instrument
        Detector geometry and electronics.
    filters : sequence of str
        Filter names; each flat depends only on ``seed`` and its name, not on the other filters.
    seed : int
        Seed of `numpy.random.default_rng`.

    Returns
    -------
    Truth
        The signatures.

    Notes
    -----
    ``bias = A (c(x)/2 + sin(.)cos(.)/2)`` with ``c ~ N(0, 1)`` per column and a smooth ripple.
    Dark rate: ``dark_current * Gamma(25)/25`` per pixel, hot pixels times 50-500 (log-uniform),
    divided by the gain. Flat: ``(1 - vignetting r^2) (1 + 0.01 N(0,1))`` with ``r = 1`` at the
    corners, times a per-filter tilt (~1%) and colour term (0.2%), divided by its mean.

    Examples
    --------
    >>> truth = make_truth(Instrument(ny=32, nx=32), filters=("V", "R"))
    >>> round(float(truth.flats["R"].mean()), 12)
    1.0
    """
    inst, rng = instrument, np.random.default_rng(seed)
    shape = (inst.ny, inst.nx)
    y, x = np.mgrid[0:inst.ny, 0:inst.nx].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 2)
    ripple = np.sin(3 * np.pi * y / inst.ny + phase[0]) * np.cos(1.4 * np.pi * x / inst.nx
                                                                  + phase[1])
    bias = inst.bias_structure * (0.5 * rng.normal(size=inst.nx)[None, :] + 0.5 * ripple)
    rate = inst.dark_current * rng.gamma(25.0, 1 / 25.0, shape)
    hot = rng.random(shape) < inst.hot_pixel_fraction
    rate[hot] *= 10 ** rng.uniform(np.log10(50), np.log10(500), int(hot.sum()))
    u = (x - (inst.nx - 1) / 2) / max((inst.nx - 1) / 2, 1)
    v = (y - (inst.ny - 1) / 2) / max((inst.ny - 1) / 2, 1)
    base = (1 - inst.vignetting * (u**2 + v**2) / 2) * (1 + 0.01 * rng.normal(size=shape))
    flats = {}
    for name in filters:
        frng = np.random.default_rng([seed, zlib.crc32(str(name).encode())])
        tilt = 1 + 0.01 * (frng.normal() * u + frng.normal() * v)
        flat = base * tilt * (1 + 0.002 * frng.normal(size=shape))
        flats[str(name)] = _readonly(flat / flat.mean())
    return Truth(instrument=inst, bias=_readonly(bias), dark_rate=_readonly(rate / inst.gain),
                 flats=flats)


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class SyntheticFrame:
    """One synthetic raw frame and what a perfect calibration of it recovers.

    Attributes
    ----------
    hdu : astropy.io.fits.PrimaryHDU
        The raw frame, uint16 data (stored as BITPIX 16, BZERO 32768) of ``instrument.raw_shape``.
    signal : numpy.ndarray or None
        Flats and lights: the noiseless photo-electrons / gain in ADU over the image area, before
        the flat response (cosmic rays excluded). ``None`` for bias and dark frames.
    cosmic_rays : numpy.ndarray
        Boolean ``(ny, nx)`` mask of image-area pixels hit by cosmic rays.

    Examples
    --------
    >>> make_frame(make_truth(Instrument(ny=8, nx=8)), imagetyp="bias", seed=0).signal is None
    True
    """

    hdu: fits.PrimaryHDU
    signal: np.ndarray | None
    cosmic_rays: np.ndarray


def make_frame(truth: Truth, *, imagetyp: str, exptime: float = 0.0, filter: str | None = None,
               seed: int, sky: float = 200.0, n_stars: int = 8, n_cosmics: int = 5,
               flat_level: float = 20000.0, date_obs: str | None = None,
               object: str = "SYNTH FIELD") -> SyntheticFrame:
    """Draw one raw frame of the detector described by `truth`.

    Parameters
    ----------
    truth : Truth
        Detector signatures from `make_truth`.
    imagetyp : {"bias", "dark", "flat", "light"}
        Frame type (case-insensitive).
    exptime : float
        Exposure time in seconds; forced to 0 for a bias.
    filter : str, optional
        Filter of a flat or light; may be omitted when `truth` has a single filter.
    seed : int
        Seed of `numpy.random.default_rng`: the same seed gives identical bytes.
    sky : float
        Lights: sky in ADU per pixel per minute of exposure, before the flat response (400 ADU in
        120 s by default).
    n_stars, n_cosmics : int
        Lights: Gaussian stars (FWHM 2-4 px, peak 200-4000 ADU per minute; the field depends only
        on `object`, `n_stars` and the image size, so lights of one object stack). Darks and
        lights: cosmic rays (straight tracks of 1-4 pixels, 3000-30000 e- per pixel).
    flat_level : float
        Flats: illumination level in ADU before the flat response.
    date_obs : str, optional
        ISO ``DATE-OBS``; default ``2024-01-01T00:00:00`` plus `seed` seconds (modulo one year).
    object : str
        Lights: ``OBJECT`` keyword and the star field's identity.

    Returns
    -------
    SyntheticFrame
        The raw HDU, the expected calibrated signal and the cosmic-ray mask.

    Raises
    ------
    ValueError
        Unknown `imagetyp` or `filter`, negative `exptime`, or unparsable `date_obs`.

    Notes
    -----
    ``raw = rint(P(y) + j + B + (Poisson(g D t + g F S) + N(0, RN) + CR) / g)`` clipped to
    ``[0, saturation]``, with ``P`` the pedestal profile, ``j`` the per-frame jitter, ``D`` the dark
    rate, ``F`` the flat, ``S`` the signal; the overscan holds ``P(y) + j + N(0, RN/g)`` only.

    Examples
    --------
    >>> truth = make_truth(Instrument(ny=32, nx=32, n_overscan=4))
    >>> frame = make_frame(truth, imagetyp="light", exptime=60.0, seed=1)
    >>> frame.hdu.data.shape, frame.hdu.data.dtype.name, frame.hdu.header["IMAGETYP"]
    ((32, 36), 'uint16', 'LIGHT')
    """
    kind, inst = str(imagetyp).lower(), truth.instrument
    if kind not in FRAME_KINDS:
        raise ValueError(f"imagetyp must be one of {FRAME_KINDS}, not {imagetyp!r}")
    if exptime < 0:
        raise ValueError(f"exptime must be >= 0, not {exptime!r}")
    t = 0.0 if kind == "bias" else float(exptime)
    rng = np.random.default_rng(seed)
    electrons = truth.dark_rate * (inst.gain * t)
    signal = None
    if kind in ("flat", "light"):
        filter = _pick_filter(truth, filter)
        if kind == "flat":
            signal = np.full((inst.ny, inst.nx), float(flat_level))
        else:
            signal = (sky + star_field((inst.ny, inst.nx), object, n_stars)) * (t / 60.0)
        electrons = electrons + truth.flats[filter] * signal * inst.gain
    image_e = rng.poisson(electrons).astype(np.float64)
    image_e += rng.normal(0.0, inst.read_noise, image_e.shape)
    cosmics = np.zeros(image_e.shape, dtype=bool)
    if kind in ("dark", "light"):
        _add_cosmics(rng, image_e, cosmics, n_cosmics)
    raw = np.empty(inst.raw_shape)
    raw[:] = (inst.pedestal_profile() + rng.normal(0.0, inst.pedestal_jitter))[:, None]
    over = _slices(inst.overscan_region)
    raw[over] += rng.normal(0.0, inst.read_noise / inst.gain, raw[over].shape)
    raw[_slices(inst.image_region)] += truth.bias + image_e / inst.gain
    data = np.clip(np.rint(raw), 0, inst.saturation).astype(np.uint16)
    header = _header(inst, kind, t, filter, object, seed, date_obs)
    return SyntheticFrame(hdu=fits.PrimaryHDU(data=data, header=header), signal=signal,
                          cosmic_rays=cosmics)


def _pick_filter(truth: Truth, name: str | None) -> str:
    if name is None and len(truth.flats) == 1:
        return next(iter(truth.flats))
    if name not in truth.flats:
        raise ValueError(f"filter {name!r} is not among the truth's filters {sorted(truth.flats)}")
    return name


def star_field(shape: tuple[int, int], name: str, n_stars: int) -> np.ndarray:
    """Noiseless Gaussian stars per minute, a pure function of the object name and image shape.

    Peaks are 200-4000 per minute (log-uniform), FWHM 2-4 pixels, centres in the inner 80%; the
    unit is the caller's (ADU for `make_frame`, electrons for the multi-amplifier night).

    Examples
    --------
    >>> field = star_field((32, 32), "SYNTH FIELD", 3)
    >>> field.shape, bool(200 < field.max() < 3 * 4000)
    ((32, 32), True)
    """
    ny, nx = shape
    rng = np.random.default_rng([zlib.crc32(name.encode()), n_stars, ny, nx])
    field = np.zeros((ny, nx))
    for _ in range(n_stars):
        yc = rng.uniform(0.1, 0.9) * (ny - 1)
        xc = rng.uniform(0.1, 0.9) * (nx - 1)
        sigma = rng.uniform(2.0, 4.0) / (2 * np.sqrt(2 * np.log(2)))
        peak = 10 ** rng.uniform(np.log10(200), np.log10(4000))
        half = int(np.ceil(5 * sigma))
        y0, y1 = max(int(yc) - half, 0), min(int(yc) + half + 1, ny)
        x0, x1 = max(int(xc) - half, 0), min(int(xc) + half + 1, nx)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        field[y0:y1, x0:x1] += peak * np.exp(-((yy - yc) ** 2 + (xx - xc) ** 2) / (2 * sigma**2))
    return field


def _add_cosmics(rng: np.random.Generator, image_e: np.ndarray, mask: np.ndarray, n: int) -> None:
    """Deposit `n` short straight tracks of charge (electrons) into `image_e`, flagging `mask`."""
    ny, nx = image_e.shape
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    for _ in range(n):
        y, x = int(rng.integers(ny)), int(rng.integers(nx))
        dy, dx = steps[int(rng.integers(len(steps)))]
        for _ in range(int(rng.integers(1, 5))):
            if 0 <= y < ny and 0 <= x < nx:
                image_e[y, x] += rng.uniform(3000.0, 30000.0)
                mask[y, x] = True
            y, x = y + dy, x + dx


def _header(inst: Instrument, kind: str, t: float, filter: str | None, object: str, seed: int,
            date_obs: str | None) -> fits.Header:
    cards = observation_cards(kind, exptime=t, filter=filter, object=object, seed=seed,
                              date_obs=date_obs, detector="SYNTH-CCD")
    cards += [
        ("BUNIT", "ADU"), ("GAIN", inst.gain), ("RDNOISE", inst.read_noise),
        ("SATURATE", inst.saturation), ("BIASSEC", inst.biassec), ("DATASEC", inst.datasec),
        ("TRIMSEC", inst.datasec), ("CCDSUM", "1 1"), ("CCD-TEMP", -100.0), ("SYNSEED", int(seed)),
    ]
    return fits.Header(cards)


def observation_cards(kind: str, *, exptime: float, filter: str | None, object: str, seed: int,
                      date_obs: str | None, detector: str) -> list[tuple[str, Any]]:
    """The cards saying what a synthetic frame is: instrument, date, type, exposure, filter, object.

    Every synthetic camera writes these alike, so the night planner sorts their frames the same way.

    Parameters
    ----------
    kind : {"bias", "dark", "flat", "light"}
        Written upper-case to ``IMAGETYP`` and ``OBSTYPE``.
    exptime : float
        ``EXPTIME`` in seconds.
    filter : str or None
        ``FILTER`` of flats and lights.
    object : str
        ``OBJECT`` of lights.
    seed : int
        The frame's seed; the default date is 2024-01-01 plus `seed` seconds (modulo one year).
    date_obs : str or None
        ISO ``DATE-OBS``.
    detector : str
        ``DETECTOR``.

    Returns
    -------
    list of (key, value)

    Raises
    ------
    ValueError
        If `date_obs` is not an ISO date.

    Examples
    --------
    >>> cards = observation_cards("light", exptime=60.0, filter="V", object="M 67", seed=0,
    ...                           date_obs=None, detector="SYNTH-CCD")
    >>> dict(cards)["IMAGETYP"], dict(cards)["DATE-OBS"], dict(cards)["OBJECT"]
    ('LIGHT', '2024-01-01T00:00:00.000', 'M 67')
    """
    if date_obs is None:
        start = datetime(2024, 1, 1) + timedelta(seconds=int(seed) % (365 * 86400))
        date_obs = start.isoformat(timespec="milliseconds")
    try:
        when = datetime.fromisoformat(date_obs).replace(tzinfo=None)
    except ValueError as err:
        raise ValueError(f"date_obs is not an ISO date: {date_obs!r}") from err
    cards: list[tuple[str, Any]] = [
        ("INSTRUME", "CCDFLOW-SYNTH"), ("TELESCOP", "SYNTHETIC"), ("DETECTOR", detector),
        ("DATE-OBS", date_obs), ("MJD-OBS", round((when - _MJD_EPOCH).total_seconds() / 86400, 8)),
        ("IMAGETYP", kind.upper()), ("OBSTYPE", kind.upper()), ("EXPTIME", exptime),
    ]
    if kind in ("flat", "light"):
        cards.append(("FILTER", filter))
    if kind == "light":
        cards.append(("OBJECT", object))
    return cards
