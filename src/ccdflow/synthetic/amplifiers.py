"""Seeded synthetic raw frames of a four-amplifier CCD with known truth, in both header layouts.

The CCD is a 2 x 2 grid of amplifiers with different pedestals, gains and read noise, overscan on
alternating sides and two readouts stored mirrored (one along x, one along y). The same frame can be
written as one image with lettered keys (``DATASECA``, ``BIASSECA``, ``DETSECA``, ``GAINA``, ...) or
as one extension per amplifier (``DATASEC``, ``BIASSEC``, ``DETSEC``, ``CCDSUM``, ``GAIN``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from ccdflow.array.detector import Amplifier, Detector
from ccdflow.array.sections import Region

__all__ = ["AMPLIFIERS", "AmplifierFrame", "AmplifierSpec", "AmplifierTruth", "make_amplifier_frame"]

LAYOUTS = ("lettered", "extensions")
_NAME = "SYNTH-4AMP"


@dataclass(frozen=True)
class AmplifierSpec:
    """Electronics and geometry of one synthetic amplifier.

    Attributes
    ----------
    name : str
        ``"A"`` to ``"D"``.
    cell : (row, column)
        Its quadrant in the 2 x 2 grid (row 0 is the bottom of the image).
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
AMPLIFIERS = (
    AmplifierSpec("A", (0, 0), 1000.0, 1.5, 4.0, False, False, False),
    AmplifierSpec("B", (0, 1), 1210.0, 2.0, 6.0, True, True, False),
    AmplifierSpec("C", (1, 0), 905.0, 1.2, 3.0, False, False, True),
    AmplifierSpec("D", (1, 1), 1100.0, 2.5, 5.0, True, False, False),
)


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


def _truth(rng: np.random.Generator, shape: tuple[int, int], ny: int, nx: int, level: float,
           bias_structure: float) -> AmplifierTruth:
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    u, v = x / (shape[1] - 1) - 0.5, y / (shape[0] - 1) - 0.5
    flat = (1 - 0.3 * (u**2 + v**2)) * (1 + 0.01 * rng.normal(size=shape))
    bias = bias_structure * rng.normal(size=(1, shape[1])) * np.ones(shape)
    gain, noise = np.empty(shape), np.empty(shape)
    for spec in AMPLIFIERS:
        cell = (slice(spec.cell[0] * ny, (spec.cell[0] + 1) * ny),
                slice(spec.cell[1] * nx, (spec.cell[1] + 1) * nx))
        gain[cell], noise[cell] = spec.gain, spec.read_noise
    return AmplifierTruth(bias=bias, flat=flat / flat.mean(), electrons=flat / flat.mean() * level,
                          gain=gain, read_noise=noise)


def _amp_block(rng, spec: AmplifierSpec, truth: AmplifierTruth, ny: int, nx: int,
               n_overscan: int) -> np.ndarray:
    """The stored raw block of one amplifier: data (mirrored as stored) and its overscan."""
    cell = (slice(spec.cell[0] * ny, (spec.cell[0] + 1) * ny),
            slice(spec.cell[1] * nx, (spec.cell[1] + 1) * nx))
    electrons = rng.poisson(truth.electrons[cell]) + rng.normal(0.0, spec.read_noise, (ny, nx))
    data = spec.pedestal + truth.bias[cell] + electrons / spec.gain
    data = data[:: -1 if spec.flip_y else 1, :: -1 if spec.flip_x else 1]
    over = spec.pedestal + rng.normal(0.0, spec.read_noise / spec.gain, (ny, n_overscan))
    return np.hstack([over, data] if spec.overscan_left else [data, over])


def _sections(spec: AmplifierSpec, *, ny: int, nx: int, n_overscan: int, x0: int, y0: int,
              binning: int) -> dict[str, str]:
    """DATASEC, BIASSEC (in the stored raw frame, offset x0, y0) and DETSEC (unbinned)."""
    dx = x0 + (n_overscan if spec.overscan_left else 0)
    ox = x0 + (0 if spec.overscan_left else nx)
    b = binning
    xd = (spec.cell[1] * nx * b + 1, (spec.cell[1] + 1) * nx * b)
    yd = (spec.cell[0] * ny * b + 1, (spec.cell[0] + 1) * ny * b)
    xd = xd[::-1] if spec.flip_x else xd
    yd = yd[::-1] if spec.flip_y else yd
    return {"DATASEC": f"[{dx + 1}:{dx + nx},{y0 + 1}:{y0 + ny}]",
            "BIASSEC": f"[{ox + 1}:{ox + n_overscan},{y0 + 1}:{y0 + ny}]",
            "DETSEC": f"[{xd[0]}:{xd[1]},{yd[0]}:{yd[1]}]"}


def _detector(*, ny: int, nx: int, n_overscan: int, binning: int, lettered: bool) -> Detector:
    amps = []
    for i, spec in enumerate(AMPLIFIERS):
        x0 = spec.cell[1] * (nx + n_overscan) if lettered else 0
        y0 = spec.cell[0] * ny if lettered else 0
        dx = x0 + (n_overscan if spec.overscan_left else 0)
        ox = x0 + (0 if spec.overscan_left else nx)
        amps.append(Amplifier(
            name=spec.name, hdu=0 if lettered else i + 1,
            data=Region(xmin=dx, xmax=dx + nx, ymin=y0, ymax=y0 + ny),
            overscans=(Region(xmin=ox, xmax=ox + n_overscan, ymin=y0, ymax=y0 + ny),),
            destination=Region(xmin=spec.cell[1] * nx, xmax=(spec.cell[1] + 1) * nx,
                               ymin=spec.cell[0] * ny, ymax=(spec.cell[0] + 1) * ny),
            flip_x=spec.flip_x, flip_y=spec.flip_y, gain=spec.gain, read_noise=spec.read_noise,
            gain_source="config", read_noise_source="config"))
    return Detector(name=_NAME, amplifiers=tuple(amps), shape=(2 * ny, 2 * nx),
                    binning=(binning, binning))


def _uint16(block: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(block), 0, 65535).astype(np.uint16)


def make_amplifier_frame(*, layout: str = "extensions", level: float = 0.0, seed: int,
                         amp_shape: tuple[int, int] = (64, 48), n_overscan: int = 16,
                         binning: int = 1, bias_structure: float = 2.0) -> AmplifierFrame:
    """Draw one raw frame of the synthetic four-amplifier CCD.

    Parameters
    ----------
    layout : {"extensions", "lettered"}
        One image extension per amplifier, or one image with lettered keys.
    level : float
        Illumination in electrons per pixel before the flat response (0 for a bias).
    seed : int
        Seed of `numpy.random.default_rng`.
    amp_shape : (rows, columns)
        Data of one amplifier in binned pixels; the assembled image is twice that each way.
    n_overscan : int
        Overscan columns per amplifier.
    binning : int
        Written to ``CCDSUM`` (same in x and y); ``DETSEC`` is in unbinned pixels.
    bias_structure : float
        RMS in ADU of a fixed column pattern above the overscan level.

    Returns
    -------
    AmplifierFrame

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
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    ny, nx = amp_shape
    rng = np.random.default_rng(seed)
    truth = _truth(rng, (2 * ny, 2 * nx), ny, nx, float(level), bias_structure)
    blocks = {s.name: _amp_block(rng, s, truth, ny, nx, n_overscan) for s in AMPLIFIERS}
    common = {"DETECTOR": _NAME, "CCDSUM": f"{binning} {binning}", "EXPTIME": 0.0 if level == 0 else 1.0,
              "OBSTYPE": "ZERO" if level == 0 else "FLAT"}
    if layout == "lettered":
        raw = np.block([[blocks["A"], blocks["B"]], [blocks["C"], blocks["D"]]])
        header = fits.Header(common)
        header["CCDNAME"] = _NAME
        for spec in AMPLIFIERS:
            keys = _sections(spec, ny=ny, nx=nx, n_overscan=n_overscan, binning=binning,
                             x0=spec.cell[1] * (nx + n_overscan), y0=spec.cell[0] * ny)
            for key, value in keys.items():
                header[f"{key}{spec.name}"] = value
            header[f"GAIN{spec.name}"], header[f"RDNOISE{spec.name}"] = spec.gain, spec.read_noise
        hdul = fits.HDUList([fits.PrimaryHDU(_uint16(raw), header)])
    else:
        hdus = [fits.PrimaryHDU(header=fits.Header(common))]
        for spec in AMPLIFIERS:
            header = fits.Header(common)
            header.update(_sections(spec, ny=ny, nx=nx, n_overscan=n_overscan, binning=binning,
                                    x0=0, y0=0))
            header.update({"CCDNAME": _NAME, "GAIN": spec.gain, "RDNOISE": spec.read_noise})
            hdus.append(fits.ImageHDU(_uint16(blocks[spec.name]), header, name=spec.name))
        hdul = fits.HDUList(hdus)
    detector = _detector(ny=ny, nx=nx, n_overscan=n_overscan, binning=binning,
                         lettered=layout == "lettered")
    return AmplifierFrame(hdul=hdul, detector=detector, truth=truth)
