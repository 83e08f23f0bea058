"""Seeded synthetic raw frames of a two- or four-amplifier CCD with known truth, in both header layouts.

The CCD is a row of two or a 2 x 2 grid of amplifiers with different pedestals, gains and read noise,
overscan on alternating sides and readouts stored mirrored (one along x; with four, one along y too).
The same frame can be written as one image with lettered keys (``DATASECA``, ``BIASSECA``,
``DETSECA``, ``GAINA``, ...) or as one extension per amplifier (``DATASEC``, ``BIASSEC``, ``DETSEC``,
``CCDSUM``, ``GAIN``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits

from ccdflow.array.detector import Amplifier, Detector
from ccdflow.array.sections import Region

__all__ = ["AMPLIFIERS", "AmplifierCamera", "AmplifierFrame", "AmplifierSpec", "AmplifierTruth",
           "make_amplifier_frame"]

LAYOUTS = ("lettered", "extensions")
AMPLIFIER_COUNTS = (2, 4)


@dataclass(frozen=True)
class AmplifierSpec:
    """Electronics and geometry of one synthetic amplifier.

    Attributes
    ----------
    name : str
        ``"A"`` to ``"D"``.
    cell : (row, column)
        Its place in the grid of amplifiers (row 0 is the bottom of the image).
    pedestal : float
        Bias level in ADU, in the data and the overscan alike.
    gain, read_noise : float
        e-/ADU and electrons.
    overscan_left : bool
        Overscan columns before the data (else after).
    flip_x, flip_y : bool
        The data are stored mirrored relative to the assembled image.
    """

    name: str
    cell: tuple[int, int]
    pedestal: float
    gain: float
    read_noise: float
    overscan_left: bool
    flip_x: bool
    flip_y: bool


#: The four amplifiers: different levels, gains and noise; overscan on both sides; two flipped.
#: A two-amplifier CCD is the bottom row, ``A`` and ``B`` side by side.
AMPLIFIERS = (
    AmplifierSpec("A", (0, 0), 1000.0, 1.5, 4.0, False, False, False),
    AmplifierSpec("B", (0, 1), 1210.0, 2.0, 6.0, True, True, False),
    AmplifierSpec("C", (1, 0), 905.0, 1.2, 3.0, False, False, True),
    AmplifierSpec("D", (1, 1), 1100.0, 2.5, 5.0, True, False, False),
)


@dataclass(frozen=True, kw_only=True)
class AmplifierCamera:
    """Geometry of a synthetic multi-amplifier CCD and how its raw files are laid out.

    Parameters
    ----------
    layout : {"extensions", "lettered"}
        One image extension per amplifier, or one image with lettered keys.
    n_amplifiers : {2, 4}
        Two amplifiers side by side (`AMPLIFIERS` ``A``, ``B``) or a 2 x 2 grid (all four).
    amp_shape : (rows, columns)
        Data of one amplifier in binned pixels.
    n_overscan : int
        Overscan columns per amplifier.
    binning : int
        Written to ``CCDSUM`` (same in x and y); ``DETSEC`` is in unbinned pixels.

    Raises
    ------
    ValueError
        Naming the field that is invalid.

    Examples
    --------
    >>> camera = AmplifierCamera(n_amplifiers=2, amp_shape=(4, 6), n_overscan=2)
    >>> camera.shape, camera.name, [s.name for s in camera.specs]
    ((4, 12), 'SYNTH-2AMP', ['A', 'B'])
    """

    layout: str = "extensions"
    n_amplifiers: int = 4
    amp_shape: tuple[int, int] = (64, 48)
    n_overscan: int = 16
    binning: int = 1

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {self.layout!r}")
        if self.n_amplifiers not in AMPLIFIER_COUNTS:
            raise ValueError(f"n_amplifiers must be one of {AMPLIFIER_COUNTS}, "
                             f"not {self.n_amplifiers!r}")
        shape = tuple(self.amp_shape)
        if len(shape) != 2 or any(int(v) != v or v < 2 for v in shape):
            raise ValueError(f"amp_shape must be two integers >= 2, not {self.amp_shape!r}")
        object.__setattr__(self, "amp_shape", (int(shape[0]), int(shape[1])))
        for name in ("n_overscan", "binning"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")

    @property
    def specs(self) -> tuple[AmplifierSpec, ...]:
        """The amplifiers of this CCD, in the order they are written."""
        return AMPLIFIERS[: self.n_amplifiers]

    @property
    def grid(self) -> tuple[int, int]:
        """Amplifier rows and columns."""
        return (1, 2) if self.n_amplifiers == 2 else (2, 2)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the assembled image in binned pixels."""
        return (self.grid[0] * self.amp_shape[0], self.grid[1] * self.amp_shape[1])

    @property
    def name(self) -> str:
        """The detector name written to ``DETECTOR`` and ``CCDNAME``."""
        return f"SYNTH-{self.n_amplifiers}AMP"

    def cell(self, spec: AmplifierSpec) -> tuple[slice, slice]:
        """The slices of `spec`'s pixels in the assembled image."""
        ny, nx = self.amp_shape
        return (slice(spec.cell[0] * ny, (spec.cell[0] + 1) * ny),
                slice(spec.cell[1] * nx, (spec.cell[1] + 1) * nx))

    def per_pixel(self, values: dict[str, float]) -> np.ndarray:
        """An assembled image holding ``values[name]`` over each amplifier's pixels.

        Examples
        --------
        >>> AmplifierCamera(n_amplifiers=2, amp_shape=(2, 2)).per_pixel({"A": 1.0, "B": 2.0})
        array([[1., 1., 2., 2.],
               [1., 1., 2., 2.]])
        """
        out = np.empty(self.shape)
        for spec in self.specs:
            out[self.cell(spec)] = values[spec.name]
        return out

    @property
    def detector(self) -> Detector:
        """The layout the written headers describe (gains and noise recorded as ``"config"``)."""
        return _detector(self)

    def draw(self, electrons: np.ndarray, *, bias: np.ndarray, rng: np.random.Generator,
             header: fits.Header, offsets: Sequence[float] | None = None) -> fits.HDUList:
        """Draw the raw file of one exposure.

        Parameters
        ----------
        electrons : numpy.ndarray
            Expected electrons per assembled pixel (`shape`), drawn as Poisson counts.
        bias : numpy.ndarray
            Fixed bias structure in ADU above each amplifier's pedestal (`shape`).
        rng : numpy.random.Generator
            Source of the Poisson and read noise.
        header : astropy.io.fits.Header
            Cards written to every HDU (``DETECTOR``, ``CCDSUM``, ``IMAGETYP``, ...).
        offsets : sequence of float, optional
            ADU added to each amplifier's pedestal in this frame, data and overscan alike.

        Returns
        -------
        astropy.io.fits.HDUList
            uint16 data (BZERO 32768) in the camera's layout.

        Notes
        -----
        Per amplifier: ``raw = rint(P + o + B + (Poisson(E) + N(0, RN)) / g)`` stored mirrored as
        the amplifier reads, overscan ``rint(P + o + N(0, RN/g))``, clipped to [0, 65535].

        Examples
        --------
        >>> camera = AmplifierCamera(layout="lettered", n_amplifiers=2, amp_shape=(3, 4),
        ...                          n_overscan=2)
        >>> hdul = camera.draw(np.zeros(camera.shape), bias=np.zeros(camera.shape),
        ...                    rng=np.random.default_rng(0), header=fits.Header())
        >>> hdul[0].data.shape, hdul[0].header["BIASSECB"]
        ((3, 12), '[7:8,1:3]')
        """
        offsets = [0.0] * self.n_amplifiers if offsets is None else list(offsets)
        blocks = {s.name: _amp_block(rng, s, self, electrons, bias, offset)
                  for s, offset in zip(self.specs, offsets, strict=True)}
        if self.layout == "lettered":
            return _lettered_hdul(self, blocks, header)
        return _extension_hdul(self, blocks, header)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON friendly) that `from_dict` reads back."""
        return {"layout": self.layout, "n_amplifiers": self.n_amplifiers,
                "amp_shape": list(self.amp_shape), "n_overscan": self.n_overscan,
                "binning": self.binning}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AmplifierCamera:
        """Build a camera from `to_dict` output."""
        return cls(**{**values, "amp_shape": tuple(values["amp_shape"])})


@dataclass(frozen=True)
class AmplifierTruth:
    """What a perfect overscan correction and assembly recovers, per assembled pixel.

    Attributes
    ----------
    bias : numpy.ndarray
        Bias structure above the overscan level, ADU (of the pixel's amplifier).
    flat : numpy.ndarray
        Pixel response (mean 1).
    electrons : numpy.ndarray
        Expected photo-electrons: ``flat * level`` (0 for a bias).
    gain, read_noise : numpy.ndarray
        Each pixel's amplifier gain (e-/ADU) and read noise (e-).

    The expected overscan-corrected image in ADU is ``bias + electrons / gain``.
    """

    bias: np.ndarray
    flat: np.ndarray
    electrons: np.ndarray
    gain: np.ndarray
    read_noise: np.ndarray

    @property
    def adu(self) -> np.ndarray:
        """The expected overscan-corrected image in ADU."""
        return self.bias + self.electrons / self.gain


@dataclass(frozen=True)
class AmplifierFrame:
    """A synthetic multi-amplifier raw frame, the detector it was written for, and its truth.

    Attributes
    ----------
    hdul : astropy.io.fits.HDUList
        The raw file (uint16 data, BZERO 32768).
    detector : Detector
        The layout the headers describe (values recorded as ``"config"``).
    truth : AmplifierTruth
        Per assembled pixel.
    """

    hdul: fits.HDUList
    detector: Detector
    truth: AmplifierTruth


def _truth(rng: np.random.Generator, camera: AmplifierCamera, level: float,
           bias_structure: float) -> AmplifierTruth:
    shape = camera.shape
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    u, v = x / (shape[1] - 1) - 0.5, y / (shape[0] - 1) - 0.5
    flat = (1 - 0.3 * (u**2 + v**2)) * (1 + 0.01 * rng.normal(size=shape))
    bias = bias_structure * rng.normal(size=(1, shape[1])) * np.ones(shape)
    gain = camera.per_pixel({s.name: s.gain for s in camera.specs})
    noise = camera.per_pixel({s.name: s.read_noise for s in camera.specs})
    return AmplifierTruth(bias=bias, flat=flat / flat.mean(), electrons=flat / flat.mean() * level,
                          gain=gain, read_noise=noise)


def _amp_block(rng: np.random.Generator, spec: AmplifierSpec, camera: AmplifierCamera,
               expected: np.ndarray, bias: np.ndarray, offset: float) -> np.ndarray:
    """The stored raw block of one amplifier: data (mirrored as stored) and its overscan."""
    (ny, nx), n_overscan, cell = camera.amp_shape, camera.n_overscan, camera.cell(spec)
    electrons = rng.poisson(expected[cell]) + rng.normal(0.0, spec.read_noise, (ny, nx))
    data = spec.pedestal + offset + bias[cell] + electrons / spec.gain
    data = data[:: -1 if spec.flip_y else 1, :: -1 if spec.flip_x else 1]
    over = spec.pedestal + offset + rng.normal(0.0, spec.read_noise / spec.gain, (ny, n_overscan))
    return np.hstack([over, data] if spec.overscan_left else [data, over])


def _origin(camera: AmplifierCamera, spec: AmplifierSpec) -> tuple[int, int]:
    """(x0, y0) of the amplifier's stored block in its HDU."""
    if camera.layout != "lettered":
        return 0, 0
    ny, nx = camera.amp_shape
    return spec.cell[1] * (nx + camera.n_overscan), spec.cell[0] * ny


def _sections(camera: AmplifierCamera, spec: AmplifierSpec) -> dict[str, str]:
    """DATASEC, BIASSEC (in the stored raw frame) and DETSEC (unbinned)."""
    (ny, nx), n_overscan, b = camera.amp_shape, camera.n_overscan, camera.binning
    x0, y0 = _origin(camera, spec)
    dx = x0 + (n_overscan if spec.overscan_left else 0)
    ox = x0 + (0 if spec.overscan_left else nx)
    xd = (spec.cell[1] * nx * b + 1, (spec.cell[1] + 1) * nx * b)
    yd = (spec.cell[0] * ny * b + 1, (spec.cell[0] + 1) * ny * b)
    xd = xd[::-1] if spec.flip_x else xd
    yd = yd[::-1] if spec.flip_y else yd
    return {"DATASEC": f"[{dx + 1}:{dx + nx},{y0 + 1}:{y0 + ny}]",
            "BIASSEC": f"[{ox + 1}:{ox + n_overscan},{y0 + 1}:{y0 + ny}]",
            "DETSEC": f"[{xd[0]}:{xd[1]},{yd[0]}:{yd[1]}]"}


def _detector(camera: AmplifierCamera) -> Detector:
    amps = []
    (ny, nx), n_overscan = camera.amp_shape, camera.n_overscan
    for i, spec in enumerate(camera.specs):
        x0, y0 = _origin(camera, spec)
        dx = x0 + (n_overscan if spec.overscan_left else 0)
        ox = x0 + (0 if spec.overscan_left else nx)
        cell = camera.cell(spec)
        amps.append(Amplifier(
            name=spec.name, hdu=0 if camera.layout == "lettered" else i + 1,
            data=Region(xmin=dx, xmax=dx + nx, ymin=y0, ymax=y0 + ny),
            overscans=(Region(xmin=ox, xmax=ox + n_overscan, ymin=y0, ymax=y0 + ny),),
            destination=Region(xmin=cell[1].start, xmax=cell[1].stop, ymin=cell[0].start,
                               ymax=cell[0].stop),
            flip_x=spec.flip_x, flip_y=spec.flip_y, gain=spec.gain, read_noise=spec.read_noise,
            gain_source="config", read_noise_source="config"))
    return Detector(name=camera.name, amplifiers=tuple(amps), shape=camera.shape,
                    binning=(camera.binning, camera.binning))


def _uint16(block: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(block), 0, 65535).astype(np.uint16)


def _lettered_hdul(camera: AmplifierCamera, blocks: dict[str, np.ndarray],
                   common: fits.Header) -> fits.HDUList:
    rows, cols = camera.grid
    by_cell = {s.cell: blocks[s.name] for s in camera.specs}
    raw = np.block([[by_cell[(r, c)] for c in range(cols)] for r in range(rows)])
    header = common.copy()
    header["CCDNAME"] = camera.name
    for spec in camera.specs:
        for key, value in _sections(camera, spec).items():
            header[f"{key}{spec.name}"] = value
        header[f"GAIN{spec.name}"], header[f"RDNOISE{spec.name}"] = spec.gain, spec.read_noise
    return fits.HDUList([fits.PrimaryHDU(_uint16(raw), header)])


def _extension_hdul(camera: AmplifierCamera, blocks: dict[str, np.ndarray],
                    common: fits.Header) -> fits.HDUList:
    hdus: list[Any] = [fits.PrimaryHDU(header=common.copy())]
    for spec in camera.specs:
        header = common.copy()
        header.update(_sections(camera, spec))
        header.update({"CCDNAME": camera.name, "GAIN": spec.gain, "RDNOISE": spec.read_noise})
        hdus.append(fits.ImageHDU(_uint16(blocks[spec.name]), header, name=spec.name))
    return fits.HDUList(hdus)


def make_amplifier_frame(*, layout: str = "extensions", level: float = 0.0, seed: int,
                         amp_shape: tuple[int, int] = (64, 48), n_overscan: int = 16,
                         binning: int = 1, bias_structure: float = 2.0,
                         n_amplifiers: int = 4) -> AmplifierFrame:
    """Draw one raw frame of the synthetic two- or four-amplifier CCD.

    Parameters
    ----------
    layout : {"extensions", "lettered"}
        One image extension per amplifier, or one image with lettered keys.
    level : float
        Illumination in electrons per pixel before the flat response (0 for a bias).
    seed : int
        Seed of `numpy.random.default_rng`.
    amp_shape : (rows, columns)
        Data of one amplifier in binned pixels.
    n_overscan : int
        Overscan columns per amplifier.
    binning : int
        Written to ``CCDSUM`` (same in x and y); ``DETSEC`` is in unbinned pixels.
    bias_structure : float
        RMS in ADU of a fixed column pattern above the overscan level.
    n_amplifiers : {2, 4}
        Two amplifiers side by side or a 2 x 2 grid (see `AmplifierCamera`).

    Returns
    -------
    AmplifierFrame

    Raises
    ------
    ValueError
        An unknown layout or amplifier count, or an invalid geometry.

    Notes
    -----
    Per amplifier: ``raw = rint(P + B + (Poisson(E) + N(0, RN)) / g)`` stored mirrored as the
    amplifier reads, overscan ``rint(P + N(0, RN/g))``; ``E = flat * level``.

    Examples
    --------
    >>> frame = make_amplifier_frame(layout="lettered", seed=0, amp_shape=(4, 6), n_overscan=2)
    >>> frame.hdul[0].data.shape, frame.detector.shape, frame.hdul[0].header["DETSECB"]
    ((8, 16), (8, 12), '[12:7,1:4]')
    """
    camera = AmplifierCamera(layout=layout, n_amplifiers=n_amplifiers, amp_shape=amp_shape,
                             n_overscan=n_overscan, binning=binning)
    rng = np.random.default_rng(seed)
    truth = _truth(rng, camera, float(level), bias_structure)
    common = fits.Header({"DETECTOR": camera.name, "CCDSUM": f"{binning} {binning}",
                          "EXPTIME": 0.0 if level == 0 else 1.0,
                          "OBSTYPE": "ZERO" if level == 0 else "FLAT"})
    hdul = camera.draw(truth.electrons, bias=truth.bias, rng=rng, header=common)
    return AmplifierFrame(hdul=hdul, detector=camera.detector, truth=truth)
