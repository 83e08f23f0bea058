"""A four-amplifier CCD with known truth, drawn here and written as FITS in two header layouts.

Nothing is shared with `ccdflow.synthetic`: a 2 x 2 grid of amplifiers with their own bias level,
gain and read noise, overscan strips on either side, one readout mirrored in x and one in y;
Poisson and read noise, integer ADU. The same pixels are written with one extension per amplifier
(``DATASEC``, ``BIASSEC``, ``DETSEC``, ``CCDSUM``, ``GAIN``, ``RDNOISE``) and as one image with
lettered keys (``DATASECA``, ``BIASSECA``, ``DETSECA``, ``GAINA``, ``RDNOISEA``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from conftest import grouped_median

AMP = 100  # rows and columns of each amplifier's data
NOVER = 24  # overscan columns of each amplifier
SHAPE = (2 * AMP, 2 * AMP)  # the assembled image
T_DARK, T_LIGHT, T_FLAT = 100.0, 60.0, 5.0
FLAT_LEVEL = 20000.0  # electrons
DARK_RATE = 0.02  # electrons per second, besides a few hot pixels
SKIES = {"faint": 2.0, "bright": 3000.0}  # electrons per pixel of a light
STARS = ((30, 40, 30000.0), (62, 150, 20000.0), (140, 60, 25000.0), (172, 170, 15000.0),
         (125, 135, 10000.0))  # (row, column, electrons), away from the amplifier seams
N_BIAS, N_DARK, N_FLAT, N_LIGHT = 8, 5, 5, 6


@dataclass(frozen=True)
class Amp:
    """One amplifier: its quadrant (row, column), pedestal ADU, gain e-/ADU, read noise e-."""

    name: str
    cell: tuple[int, int]
    pedestal: float
    gain: float
    read_noise: float
    overscan_left: bool
    flip_x: bool
    flip_y: bool

    @property
    def block(self) -> tuple[slice, slice]:
        """Its pixels in the assembled image."""
        r, c = self.cell
        return slice(r * AMP, (r + 1) * AMP), slice(c * AMP, (c + 1) * AMP)


AMPS = (Amp("A", (0, 0), 1000.0, 1.2, 3.0, False, False, False),
        Amp("B", (0, 1), 1350.0, 2.8, 8.0, True, True, False),
        Amp("C", (1, 0), 800.0, 1.7, 5.0, False, False, True),
        Amp("D", (1, 1), 1200.0, 2.3, 6.5, True, False, False))


@dataclass(frozen=True)
class Scene:
    """The truth over the assembled image."""

    bias: np.ndarray  # ADU of each pixel's amplifier above its pedestal
    dark: np.ndarray  # electrons per second
    response: np.ndarray  # mean 1
    stars: np.ndarray  # electrons per light before the response
    gain: np.ndarray  # each pixel's amplifier gain

    @property
    def star_free(self) -> np.ndarray:
        """Pixels further than 10 from every star."""
        y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
        far = np.ones(SHAPE, bool)
        for row, col, _ in STARS:
            far &= (y - row) ** 2 + (x - col) ** 2 > 100
        return far


def _scene() -> Scene:
    rng = np.random.default_rng(2024)
    y, x = np.mgrid[0:SHAPE[0], 0:SHAPE[1]].astype(float)
    smooth = 1 - 0.15 * ((x - 90) ** 2 + (y - 110) ** 2) / AMP ** 2
    response = smooth * (1 + 0.02 * rng.normal(size=SHAPE))
    bias = 2.0 * rng.normal(size=(1, SHAPE[1])) + 0.01 * y  # column pattern and a slope
    dark = np.full(SHAPE, DARK_RATE)
    dark[rng.integers(0, SHAPE[0], 12), rng.integers(0, SHAPE[1], 12)] = 3.0  # hot pixels
    stars = np.zeros(SHAPE)
    for row, col, flux in STARS:
        stars += flux * np.exp(-((y - row) ** 2 + (x - col) ** 2) / (2 * 1.6 ** 2)) / (
            2 * np.pi * 1.6 ** 2)
    gain = np.empty(SHAPE)
    for amp in AMPS:
        gain[amp.block] = amp.gain
    return Scene(bias=bias, dark=dark, response=response / response.mean(), stars=stars,
                 gain=gain)


def _readout(rng, scene: Scene, electrons: np.ndarray) -> dict[str, np.ndarray]:
    """Each amplifier's stored block (data mirrored as read out, overscan strip), uint16."""
    counts = rng.poisson(electrons)
    blocks = {}
    for amp in AMPS:
        e = counts[amp.block] + rng.normal(0.0, amp.read_noise, (AMP, AMP))
        data = amp.pedestal + scene.bias[amp.block] + e / amp.gain
        data = data[:: -1 if amp.flip_y else 1, :: -1 if amp.flip_x else 1]
        over = amp.pedestal + rng.normal(0.0, amp.read_noise / amp.gain, (AMP, NOVER))
        stored = np.hstack([over, data] if amp.overscan_left else [data, over])
        blocks[amp.name] = np.clip(np.rint(stored), 0, 65535).astype(np.uint16)
    return blocks


def _sections(amp: Amp, x0: int, y0: int) -> dict[str, str]:
    """DATASEC, BIASSEC (in a stored image whose block starts at x0, y0) and DETSEC."""
    dx = x0 + (NOVER if amp.overscan_left else 0)
    ox = x0 + (0 if amp.overscan_left else AMP)
    r, c = amp.cell
    xd = (c * AMP + 1, (c + 1) * AMP)[:: -1 if amp.flip_x else 1]
    yd = (r * AMP + 1, (r + 1) * AMP)[:: -1 if amp.flip_y else 1]
    return {"DATASEC": f"[{dx + 1}:{dx + AMP},{y0 + 1}:{y0 + AMP}]",
            "BIASSEC": f"[{ox + 1}:{ox + NOVER},{y0 + 1}:{y0 + AMP}]",
            "DETSEC": f"[{xd[0]}:{xd[1]},{yd[0]}:{yd[1]}]"}


def _write(path: Path, blocks: dict[str, np.ndarray], cards: dict, *, layout: str) -> None:
    if layout == "extensions":
        hdus = [fits.PrimaryHDU(header=fits.Header(cards))]
        for amp in AMPS:
            header = fits.Header({**_sections(amp, 0, 0), "CCDSUM": "1 1", "GAIN": amp.gain,
                                  "RDNOISE": amp.read_noise})
            hdus.append(fits.ImageHDU(blocks[amp.name], header=header, name=f"AMP{amp.name}"))
        fits.HDUList(hdus).writeto(path)
        return
    image = np.zeros((2 * AMP, 2 * (AMP + NOVER)), np.uint16)
    header = fits.Header({**cards, "CCDSUM": "1 1"})
    for amp in AMPS:
        y0, x0 = amp.cell[0] * AMP, amp.cell[1] * (AMP + NOVER)
        image[y0:y0 + AMP, x0:x0 + AMP + NOVER] = blocks[amp.name]
        for key, value in _sections(amp, x0, y0).items():
            header[f"{key}{amp.name}"] = value
        header[f"GAIN{amp.name}"] = amp.gain
        header[f"RDNOISE{amp.name}"] = amp.read_noise
    fits.PrimaryHDU(image, header=header).writeto(path)


@dataclass(frozen=True)
class Night:
    """The raw frames written for both layouts, and each frame's stored blocks."""

    folder: Path
    scene: Scene
    raws: dict[str, tuple[str, float, dict[str, np.ndarray]]]  # stem -> (type, exptime, blocks)


def _electrons(scene: Scene, kind: str, exptime: float, sky: float = 0.0) -> np.ndarray:
    dark = scene.dark * exptime
    if kind == "bias":
        return np.zeros(SHAPE)
    if kind == "dark":
        return dark
    if kind == "flat":
        return scene.response * FLAT_LEVEL + dark
    return scene.response * (sky + scene.stars) + dark


def _frames() -> list[tuple[str, str, float, float]]:
    """(stem, type, exptime, sky) of every raw frame of the night."""
    frames = [(f"bias{i}", "bias", 0.0, 0.0) for i in range(N_BIAS)]
    frames += [(f"dark{i}", "dark", T_DARK, 0.0) for i in range(N_DARK)]
    frames += [(f"flat{i}", "flat", T_FLAT, 0.0) for i in range(N_FLAT)]
    for regime, sky in SKIES.items():
        frames += [(f"{regime}{i}", "light", T_LIGHT, sky) for i in range(N_LIGHT)]
    return frames


def write_night(folder: Path) -> Night:
    """Draw every frame of the night (seeded) and write it in both layouts under `folder`."""
    scene = _scene()
    rng = np.random.default_rng(77)
    raws = {}
    for stem, kind, exptime, sky in _frames():
        blocks = _readout(rng, scene, _electrons(scene, kind, exptime, sky))
        raws[stem] = (kind, exptime, blocks)
        cards = {"IMAGETYP": kind, "EXPTIME": exptime, "FILTER": "V", "OBJECT": stem}
        for layout in ("extensions", "lettered"):
            (folder / layout).mkdir(exist_ok=True)
            _write(folder / layout / f"{stem}.fits", blocks, cards, layout=layout)
    return Night(folder=folder, scene=scene, raws=raws)


def assembled(blocks: dict[str, np.ndarray]) -> np.ndarray:
    """Plain numpy: each amplifier minus the grouped median of its overscan, mirrored, placed."""
    out = np.empty(SHAPE)
    for amp in AMPS:
        stored = blocks[amp.name].astype(np.float64)
        over = stored[:, :NOVER] if amp.overscan_left else stored[:, AMP:]
        data = stored[:, NOVER:] if amp.overscan_left else stored[:, :AMP]
        data = data - grouped_median(over)
        out[amp.block] = data[:: -1 if amp.flip_y else 1, :: -1 if amp.flip_x else 1]
    return out
