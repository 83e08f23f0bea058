"""Cosmic-ray detection on single calibrated frames, lazily: one astroscrappy task per frame."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import dask.array as da
import numpy as np

from ccdflow.array.params import check_keys, parse_enum, parse_int, parse_number, to_plain_dict
from ccdflow.errors import ConfigError
from ccdflow.kernels.cosmics import detect_cosmics_block

__all__ = ["CleanType", "CosmicRayParams", "FineStructure", "detect_cosmic_rays"]


class CleanType(StrEnum):
    """How astroscrappy replaces a hit."""

    meanmask = "meanmask"
    """Mean of the unflagged pixels of the 5x5 box around."""
    medmask = "medmask"
    """Median of the unflagged pixels of the 5x5 box around."""
    median = "median"
    """Median of the whole 5x5 box."""
    idw = "idw"
    """Inverse-distance weighted mean of the unflagged pixels of the 5x5 box."""


class FineStructure(StrEnum):
    """How astroscrappy builds its fine-structure image (which protects stars)."""

    median = "median"
    """Median filters, as L.A.Cosmic."""
    convolve = "convolve"
    """Convolution with a Gaussian PSF of ``psffwhm``."""


@dataclass(frozen=True, kw_only=True)
class CosmicRayParams:
    """Parameters of `detect_cosmic_rays`: astroscrappy's, with its names and defaults.

    Parameters
    ----------
    sigclip : float
        Laplacian-to-noise threshold of a hit.
    sigfrac : float
        Fraction of ``sigclip`` for a hit's neighbours.
    objlim : float
        Laplacian to fine-structure contrast a hit must exceed (raise it if star cores are flagged).
    niter : int
        Iterations.
    sepmed : bool
        Separable median filter (faster, nearly the same).
    cleantype : CleanType
    fsmode : FineStructure
    psffwhm : float
        FWHM (pixels) of the PSF for ``fsmode="convolve"``.
    psfsize : int
        Odd size of that PSF kernel.

    Examples
    --------
    >>> CosmicRayParams(objlim=8).to_dict()["objlim"]
    8.0
    """

    sigclip: float = 4.5
    sigfrac: float = 0.3
    objlim: float = 5.0
    niter: int = 4
    sepmed: bool = True
    cleantype: CleanType = CleanType.meanmask
    fsmode: FineStructure = FineStructure.median
    psffwhm: float = 2.5
    psfsize: int = 7

    def __post_init__(self):
        setter = object.__setattr__.__get__(self)
        for key in ("sigclip", "sigfrac", "objlim", "psffwhm"):
            setter(key, parse_number(getattr(self, key), key=key, strict=True))
        setter("niter", parse_int(self.niter, key="niter", minimum=1))
        setter("psfsize", parse_int(self.psfsize, key="psfsize", minimum=1))
        if self.psfsize % 2 == 0:
            raise ConfigError("psfsize", f"must be odd, got {self.psfsize}")
        if not isinstance(self.sepmed, bool):
            raise ConfigError("sepmed", f"expected true or false, got {self.sepmed!r}")
        setter("cleantype", parse_enum(CleanType, self.cleantype, key="cleantype"))
        setter("fsmode", parse_enum(FineStructure, self.fsmode, key="fsmode"))

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain values (round-trips through `from_dict`)."""
        return to_plain_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, key: str = "cosmic_rays") -> CosmicRayParams:
        """Build from a mapping; an unknown or invalid field raises `ConfigError` naming ``key.field``."""
        check_keys(cls, data, key=key)
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{key}.{err.key}", err.reason) from None


def _block(image, variance, bad, *, sky, **kwargs):
    mask, cleaned = detect_cosmics_block(image, sky=sky, variance=variance, bad=bad, **kwargs)
    return np.stack([mask.astype(np.float32), cleaned])


def detect_cosmic_rays(
    image: Any,
    *,
    gain: float,
    read_noise: float,
    sky: float = 0.0,
    error: Any = None,
    saturation: float | None = None,
    bad: Any = None,
    params: CosmicRayParams = CosmicRayParams(),
) -> tuple[da.Array, da.Array]:
    """Lazy cosmic-ray mask and cleaned image of one calibrated frame (one task, the whole frame).

    Parameters
    ----------
    image : array
        2-D calibrated frame in ADU, sky included (see `ccdflow.kernels.cosmics.detect_cosmics_block`
        for the units and for ``sky``).
    gain : float
        e-/ADU of ``image`` (1 if it is in electrons).
    read_noise : float
        Electrons.
    sky : float
        Level already subtracted from ``image``, ADU.
    error : array, optional
        1-sigma error of ``image`` (ADU): its square replaces astroscrappy's noise model.
    saturation : float, optional
        ADU.
    bad : array, optional
        Nonzero where astroscrappy must not look (e.g. ``mask & (BAD | SATURATED | BLEED) != 0``).
    params : CosmicRayParams

    Returns
    -------
    mask : dask.array.Array of bool
        The hits (set `MaskBits.COSMIC_RAY` there).
    cleaned : dask.array.Array of float32
        The image with the hits replaced; the error array is left as it was (see the kernel's Notes).

    Examples
    --------
    >>> img = np.random.default_rng(0).normal(100.0, 10.0, (64, 64)); img[20, 30] += 2000.0
    >>> mask, cleaned = detect_cosmic_rays(img, gain=1.0, read_noise=10.0)
    >>> bool(mask[20, 30].compute())
    True
    """
    image = da.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"one frame at a time: expected a 2-D image, got shape {image.shape}")
    whole = image.shape
    # L.A.Cosmic's iterations reach ever farther: the frame is one block rather than an overlap guess
    image = image.rechunk(whole)
    variance = None if error is None else (da.asarray(error).astype(np.float32) ** 2).rechunk(whole)
    bad = None if bad is None else (da.asarray(bad) != 0).rechunk(whole)
    kwargs = dict(gain=float(gain), read_noise=float(read_noise), saturation=saturation,
                  **{k: (v.value if isinstance(v, StrEnum) else v) for k, v in params.to_dict().items()})
    out = da.map_blocks(_block, image, variance, bad, sky=float(sky), **kwargs, new_axis=0,
                        chunks=((2,),) + image.chunks, dtype=np.float32,
                        meta=np.empty((0, 0, 0), np.float32))
    return out[0] > 0.5, out[1]
