"""The night's bad-pixel mask, written as ``masters/bpm.fits`` and to zarr.

Hot pixels come from the master dark, dead pixels and bad columns from the master flats, and the
user's own mask is merged in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import dask
import dask.array as da
import numpy as np
from astropy.io import fits

from ccdflow._version import __version__
from ccdflow.array.badpixels import BadPixelParams, bad_pixel_mask
from ccdflow.array.detector import Detector
from ccdflow.array.masks import MASK_DTYPE, MaskBits, mask_header
from ccdflow.array.sections import Region
from ccdflow.errors import CcdflowError, FrameReadError, IncompatibleFramesError
from ccdflow.io.location import open_fits
from ccdflow.io.products import file_sha1
from ccdflow.io.write import write_fits
from ccdflow.night.report import ProductStatus
from ccdflow.night.store import Store

__all__ = ["BpmPlan", "build_bpm", "read_user_mask"]

#: The store and file name of the night's bad-pixel mask when it has no flat (else ``bpm_<FILTER>``).
BPM = "bpm"


@dataclass(frozen=True)
class BpmPlan:
    """Which masters the night's bad-pixel mask is found in, and how.

    Attributes
    ----------
    name : str
        ``bpm_<FILTER>`` (from that filter's flat), or ``bpm`` without flats.
    dark : str or None
        The master dark's name (hot pixels).
    flats : tuple of str
        The master flats' names (dead and cold pixels, bad columns); a pixel bad in any is bad.
    user_mask : Path or None
        The user's own mask (FITS, nonzero = bad), merged in.
    params : BadPixelParams
        Thresholds.
    key : str
        Resume key: the masters' keys, the parameters and the user file's identity.
    """

    name: str
    dark: str | None
    flats: tuple[str, ...]
    user_mask: Path | None
    params: BadPixelParams
    key: str = ""


def read_user_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A user's bad-pixel mask (first image HDU, nonzero or NaN = bad) as booleans.

    Raises
    ------
    FrameReadError
        If the file cannot be read or holds no image.
    IncompatibleFramesError
        If its shape is not the image area's.
    """
    try:
        with open_fits(path, memmap=False) as hdul:
            image = next((h.data for h in hdul if h.data is not None and h.data.ndim == 2), None)
    except (OSError, ValueError) as err:
        raise FrameReadError(path, f"cannot read the bad-pixel mask: {err}") from err
    if image is None:
        raise FrameReadError(path, "the bad-pixel mask file holds no 2-D image")
    if image.shape != tuple(shape):
        raise IncompatibleFramesError(path, f"bad-pixel mask shape {image.shape} differs from the "
                                      f"image area {tuple(shape)}")
    values = np.asarray(image, dtype=np.float64)
    return (values != 0) | ~np.isfinite(values)


def build_bpm(plan: BpmPlan, store: Store, output: Path, *, shape: tuple[int, int]) -> dict:
    """Build (or reuse) the night's bad-pixel mask; returns its entry for the report.

    Parameters
    ----------
    plan : BpmPlan
        Its sources.
    store : Store
        The night's store, holding the masters it is found in.
    output : Path
        The night's output folder (``masters/bpm.fits`` goes there).
    shape : (int, int)
        The image area.

    Returns
    -------
    dict
        ``name``, ``status``, ``output``, ``seconds``, ``flagged`` (pixels) and ``error``.
    """
    path = output / "masters" / f"{plan.name}.fits"
    entry = {"name": plan.name, "output": str(path), "seconds": 0.0, "inputs": [*filter(None, (
        plan.dark, *plan.flats)), *([str(plan.user_mask)] if plan.user_mask else [])]}
    if store.master_is_current(plan.name, plan.key) and path.exists():
        return {**entry, "status": ProductStatus.reused,
                "flagged": store.master_attrs(plan.name).get("flagged")}
    start = time.perf_counter()
    try:
        mask = _compute(plan, store, shape)
    except CcdflowError as err:
        return {**entry, "status": ProductStatus.failed, "error": f"{type(err).__name__}: {err}"}
    flagged = int(np.count_nonzero(mask))
    header = fits.Header()
    header["IMAGETYP"] = ("BAD PIXEL MASK", "ccdflow bad-pixel mask")
    header["NBADPIX"] = (flagged, "pixels flagged bad")
    header["HOTSIG"] = (plan.params.hot_sigma, "hot pixel threshold, robust sigmas")
    header["CCDMLSIG"] = (plan.params.lsigma, "ccdmask low threshold, sigmas")
    header["CCDMHSIG"] = (plan.params.hsigma, "ccdmask high threshold, sigmas")
    for i, source in enumerate(entry["inputs"], start=1):
        header[f"INPUT{i:03d}"] = Path(source).name
    for key, value, comment in mask_header(dtype=MASK_DTYPE):
        header[key] = (value, comment)
    header["CCDFLVER"] = (__version__, "ccdflow version")
    write_fits(path, fits.HDUList([fits.PrimaryHDU(mask, header=header)]), checksum=True)
    store.write_master(plan.name, data=mask, error=np.zeros_like(mask), count=np.zeros_like(mask), attrs={
        "key": plan.key, "kind": BPM, "flagged": flagged, "inputs": entry["inputs"],
        "params": plan.params.to_dict(), "fits_name": path.name, "fits_sha1": file_sha1(path)})
    return {**entry, "status": ProductStatus.built, "seconds": time.perf_counter() - start,
            "flagged": flagged}


def _amplifier_areas(store: Store, name: str) -> tuple[Region, ...]:
    """Where each amplifier of master ``name`` lies, as recorded with it."""
    detector = store.master_attrs(name).get("calibration", {}).get("detector")
    if not detector:
        return ()
    return tuple(a.destination for a in Detector.from_dict(detector).amplifiers)


def _compute(plan: BpmPlan, store: Store, shape: tuple[int, int]) -> np.ndarray:
    root = store.root("r")
    dark = da.from_zarr(root[f"masters/{plan.dark}/data"]) if plan.dark else None
    user = read_user_mask(plan.user_mask, shape) if plan.user_mask else None
    masks = [bad_pixel_mask(dark=dark, user_mask=user, params=plan.params,
                            amplifiers=_amplifier_areas(store, plan.dark) if plan.dark else ())
             ] if (dark is not None or user is not None) else []
    masks += [bad_pixel_mask(flat=da.from_zarr(root[f"masters/{name}/data"]), params=plan.params,
                             amplifiers=_amplifier_areas(store, name))
              for name in plan.flats]
    bit = MASK_DTYPE.type(MaskBits.BAD)
    if not masks:
        return np.zeros(shape, MASK_DTYPE)
    merged = dask.compute(*masks, scheduler="threads")
    return np.bitwise_or.reduce(np.stack(merged), axis=0).astype(MASK_DTYPE) & bit
