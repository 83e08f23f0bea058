"""Per-amplifier overscan correction, optional conversion to electrons, and assembly of a detector.

`assemble_frame` works on numpy blocks (one task's work); `assemble` wraps it lazily over dask arrays.
Both return the assembled image with what the error model needs per pixel: the variance of the
overscan level plus the read noise of the pixel's own amplifier, and maps of gain and read noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import dask.array as da
import numpy as np

from ccdflow.array.detector import Amplifier, Detector
from ccdflow.array.overscan import OverscanMethods, OverscanParams, UserOverscan, overscan_correction
from ccdflow.array.params import parse_enum
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError
from ccdflow.kernels.assemble import fill_amplifier, place_amplifier

__all__ = ["Assembled", "Units", "assemble", "assemble_frame"]

_PLANES = 4  # image, variance, gain, read noise


class Units(StrEnum):
    """Units of an assembled image."""

    adu = "adu"
    """Raw units: each amplifier's ADU, overscan-corrected."""
    electron = "electron"
    """Each amplifier multiplied by its own gain right after its overscan correction."""


@dataclass(frozen=True)
class Assembled:
    """An assembled detector image and the per-pixel terms of its error model.

    Attributes
    ----------
    image : array
        float32 ``(ny, nx)``: overscan-corrected data of every amplifier in its place.
    variance : array
        float32, in the image's units squared: the variance of the amplifier's overscan level
        plus its read noise, ``var_O + (RN/g)**2`` in ADU or ``g**2 var_O + RN**2`` in electrons.
        The Poisson term is left to the error model: ``max(x, 0)/gain`` in ADU, ``max(x, 0)`` in
        electrons.
    gain : array
        float32 map of each pixel's amplifier gain (e-/ADU).
    read_noise : array
        float32 map of each pixel's amplifier read noise (electrons).
    units : Units
        Units of `image`.

    Pixels of the detector shape that no amplifier covers are NaN in every plane.
    """

    image: Any
    variance: Any
    gain: Any
    read_noise: Any
    units: Units


def _crop(values: np.ndarray | float, region: Region) -> np.ndarray | float:
    """Restrict an overscan level/variance, broadcastable to the raw frame, to the data section."""
    values = np.asarray(values)
    if values.ndim < 2:
        return values
    rows = region.slices[0] if values.shape[0] > 1 else slice(None)
    cols = region.slices[1] if values.shape[1] > 1 else slice(None)
    return values[rows, cols]


def _place(planes: np.ndarray, raw: np.ndarray, amp: Amplifier, *, method, params, units) -> None:
    if amp.overscans:
        level, var = overscan_correction(raw, amp.overscans, method, params)
        level, var = _crop(level, amp.data), _crop(var, amp.data)
    else:
        level, var = 0.0, 0.0
    scale = amp.gain if units == Units.electron else 1.0
    where = {"dest": amp.destination.bounds, "flip_x": amp.flip_x, "flip_y": amp.flip_y}
    place_amplifier(planes[0], raw[amp.data.slices], level=level, scale=scale, **where)
    read_var = amp.read_noise**2 if units == Units.electron else (amp.read_noise / amp.gain) ** 2
    fill_amplifier(planes[1], np.asarray(var) * scale**2 + read_var, **where)
    fill_amplifier(planes[2], amp.gain, **where)
    fill_amplifier(planes[3], amp.read_noise, **where)


def _assemble_planes(*raws: np.ndarray, detector: Detector, method, params, units) -> np.ndarray:
    """The (4, ny, nx) float32 planes; `raws` in the order of ``detector.hdus``."""
    by_hdu = dict(zip(detector.hdus, raws, strict=True))
    covered = sum(a.destination.shape[0] * a.destination.shape[1] for a in detector.amplifiers)
    full = covered == detector.shape[0] * detector.shape[1]  # destinations never overlap
    shape = (_PLANES, *detector.shape)
    planes = np.empty(shape, np.float32) if full else np.full(shape, np.nan, np.float32)
    for amp in detector.amplifiers:
        _place(planes, by_hdu[amp.hdu], amp, method=method, params=params, units=units)
    return planes


def _check(raws: Mapping, detector: Detector, method, units) -> tuple[list, Any, Units]:
    if not isinstance(detector, Detector):
        raise ConfigError("detector", f"expected a Detector, got {type(detector).__name__}")
    if not isinstance(raws, Mapping):
        raise ConfigError("raws", f"expected a mapping of HDU to image, got {type(raws).__name__}")
    missing = [h for h in detector.hdus if h not in raws]
    if missing:
        raise ConfigError("raws", f"no image given for HDU(s) {missing} of detector {detector.name}")
    arrays = [raws[h] for h in detector.hdus]
    for amp in detector.amplifiers:
        shape = raws[amp.hdu].shape
        for region in (amp.data, *amp.overscans):
            if len(shape) != 2 or not region.fits_in(shape):
                raise ConfigError(f"amplifiers.{amp.name}", f"section {region.to_section()} lies "
                                  f"outside HDU {amp.hdu!r} of shape {shape}")
    if not callable(method) or isinstance(method, str):
        method = parse_enum(OverscanMethods, method, key="overscan_method")
    return arrays, method, parse_enum(Units, units, key="units")


def assemble_frame(
    raws: Mapping[int | str, np.ndarray],
    *,
    detector: Detector,
    overscan_method: OverscanMethods | UserOverscan = OverscanMethods.median,
    overscan_params: OverscanParams = OverscanParams(),
    units: Units | str = Units.adu,
) -> Assembled:
    """Overscan-correct each amplifier from its own strip and assemble the detector image (numpy).

    Parameters
    ----------
    raws : mapping of HDU to numpy.ndarray
        The raw 2-D image of every HDU in ``detector.hdus`` (float32 recommended).
    detector : Detector
        The amplifier layout.
    overscan_method : OverscanMethods or callable
        Applied to each amplifier's own overscan strips (amplifiers without one are not corrected).
    overscan_params : OverscanParams
        Knobs of the built-in methods.
    units : Units or str
        ``"adu"`` or ``"electron"`` (each amplifier times its gain right after its overscan).

    Returns
    -------
    Assembled
        numpy arrays; the four planes are views of one ``(4, ny, nx)`` float32 block.

    Raises
    ------
    ConfigError
        A missing HDU, a section outside its HDU, an unknown method or unit.

    Notes
    -----
    Per amplifier: ``out[dest] = flip((raw[data] - O) * s)`` with ``O`` the overscan level (scalar,
    per row or per column, cropped to the data section), ``s = g`` for electrons and 1 for ADU.
    NaN propagates from the raw pixel and from a NaN overscan level.

    Examples
    --------
    >>> det = Detector.single((4, 6), overscans=["[5:6,1:4]"], image_area="[1:4,1:4]")
    >>> raw = np.full((4, 6), 100.0, dtype=np.float32)
    >>> float(assemble_frame({0: raw}, detector=det).image.max())
    0.0
    """
    arrays, method, units = _check(raws, detector, overscan_method, units)
    planes = _assemble_planes(*arrays, detector=detector, method=method, params=overscan_params,
                              units=units)
    return Assembled(image=planes[0], variance=planes[1], gain=planes[2], read_noise=planes[3],
                     units=units)


def assemble(
    raws: Mapping[int | str, da.Array],
    *,
    detector: Detector,
    overscan_method: OverscanMethods | UserOverscan = OverscanMethods.median,
    overscan_params: OverscanParams = OverscanParams(),
    units: Units | str = Units.adu,
) -> Assembled:
    """Lazy `assemble_frame` over dask arrays: one task per frame, nothing computed.

    Parameters
    ----------
    raws : mapping of HDU to dask.array.Array
        The raw 2-D image of every HDU in ``detector.hdus``; each is brought to one chunk.
    detector, overscan_method, overscan_params, units
        As in `assemble_frame`.

    Returns
    -------
    Assembled
        dask arrays, one chunk each, slices of one ``(4, ny, nx)`` task: computing them together
        runs the assembly once.

    Raises
    ------
    ConfigError
        As `assemble_frame`, at call time.

    Examples
    --------
    >>> det = Detector.single((4, 6), overscans=["[5:6,1:4]"], image_area="[1:4,1:4]")
    >>> raw = da.full((4, 6), 100.0, dtype=np.float32, chunks=2)
    >>> assemble({0: raw}, detector=det, units="electron").image.shape
    (4, 4)
    """
    arrays, method, units = _check(raws, detector, overscan_method, units)
    blocks = [da.asarray(a).astype(np.float32, copy=False) for a in arrays]
    blocks = [b.rechunk(b.shape) for b in blocks]
    ny, nx = detector.shape
    planes = da.map_blocks(
        _assemble_planes, *blocks, detector=detector, method=method, params=overscan_params,
        units=units, dtype=np.float32, meta=np.empty((0, 0, 0), np.float32),
        chunks=((_PLANES,), (ny,), (nx,)), new_axis=[0],
        name="ccdflow-assemble",
    )
    return Assembled(image=planes[0], variance=planes[1], gain=planes[2], read_noise=planes[3],
                     units=units)
