"""Cosmic rays on a single calibrated frame with astroscrappy (L.A.Cosmic), in the units it expects."""

from __future__ import annotations

import numpy as np

__all__ = ["detect_cosmics_block"]


def detect_cosmics_block(
    image: np.ndarray,
    *,
    gain: float,
    read_noise: float,
    sky: float | np.ndarray = 0.0,
    variance: np.ndarray | None = None,
    saturation: float | None = None,
    bad: np.ndarray | None = None,
    sigclip: float = 4.5,
    sigfrac: float = 0.3,
    objlim: float = 5.0,
    niter: int = 4,
    sepmed: bool = True,
    cleantype: str = "meanmask",
    fsmode: str = "median",
    psffwhm: float = 2.5,
    psfsize: int = 7,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect (and replace) cosmic-ray hits on one frame with ``astroscrappy.detect_cosmics``.

    Parameters
    ----------
    image : numpy.ndarray
        2-D calibrated frame in **ADU** (bias and dark removed, flat-fielded), sky included.
    gain : float
        e-/ADU of ``image``. astroscrappy multiplies by it to work in electrons: an image already in
        electrons must come with ``gain=1``, or the gain is applied twice and the noise model is off
        by ``sqrt(gain)``.
    read_noise : float
        Electrons.
    sky : float or numpy.ndarray
        Level (ADU) already subtracted from ``image``, added back for the detection so that its
        Poisson noise is counted, and taken off the cleaned image again. 0 for ccdflow's calibrated
        lights, which keep their sky.
    variance : numpy.ndarray, optional
        Per-pixel variance of ``image`` in ADU^2 (ccdflow's ``ERROR`` squared); used instead of the
        ``gain``/``read_noise`` model, which ignores the flat field's scaling.
    saturation : float, optional
        Saturation level in ADU of ``image``; passed to astroscrappy in electrons
        (``saturation * gain``), which masks saturated stars. ``None``: no level.
    bad : numpy.ndarray of bool, optional
        Pixels astroscrappy must ignore (bad pixels, bleed trails). Non-finite pixels are added.
    sigclip, sigfrac, objlim, niter, sepmed, cleantype, fsmode, psffwhm, psfsize
        astroscrappy's own parameters, with its defaults.

    Returns
    -------
    mask : numpy.ndarray of bool
        True on the cosmic-ray pixels found (never on a pixel in ``bad`` or non-finite).
    cleaned : numpy.ndarray of float32
        ``image`` with the hits replaced (``cleantype``; default the mean of the unflagged pixels in
        the 5x5 box around), in ADU, ``sky`` not included; unflagged pixels unchanged.

    Notes
    -----
    Units, as astroscrappy 1.x defines them: ``indat`` and ``invar`` in ADU and ADU^2, ``gain`` in
    e-/ADU, ``readnoise`` and ``satlevel`` in electrons; its cleaned array comes back in ADU. (ccdproc's
    ``cosmicray_lacosmic`` multiplies the cleaned array by the gain when ``gain_apply=True``: a second
    gain on data that were already converted.) The error of a replaced pixel is not recomputed: the
    caller keeps the original error (inflated by the hit's own Poisson term, so the pixel weighs little
    in any weighted combination) and the pixel carries ``MaskBits.COSMIC_RAY``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(100.0, 10.0, (64, 64)).astype(np.float32); img[20, 30] += 2000.0
    >>> mask, cleaned = detect_cosmics_block(img, gain=1.0, read_noise=10.0)
    >>> bool(mask[20, 30]), bool(abs(cleaned[20, 30] - 100.0) < 30.0), int(mask.sum()) < 4
    (True, True, True)
    """
    import astroscrappy  # a compiled extension: loaded when a frame is first checked, not at import

    image = np.asarray(image, dtype=np.float32)
    sky = np.asarray(sky, dtype=np.float32)
    data = image + sky
    finite = np.isfinite(data)
    ignore = ~finite if bad is None else (~finite | np.asarray(bad, dtype=bool))
    if not finite.all():
        # NaN would poison astroscrappy's medians: fill with the frame's median, and ignore them
        data = np.where(finite, data, np.float32(np.median(data[finite]) if finite.any() else 0.0))
    invar = None
    if variance is not None:
        invar = np.asarray(variance, dtype=np.float32)
        invar = np.where(np.isfinite(invar), invar, np.float32(np.nanmedian(invar)))
    satlevel = np.inf if saturation is None else float(saturation) * float(gain)
    mask, cleaned = astroscrappy.detect_cosmics(
        data, inmask=ignore, invar=invar, sigclip=sigclip, sigfrac=sigfrac, objlim=objlim,
        gain=float(gain), readnoise=float(read_noise), satlevel=satlevel, niter=niter, sepmed=sepmed,
        cleantype=cleantype, fsmode=fsmode, psffwhm=psffwhm, psfsize=psfsize,
    )
    mask = np.asarray(mask, dtype=bool) & ~ignore
    cleaned = np.where(mask, np.asarray(cleaned, dtype=np.float32) - sky, image)
    return mask, cleaned.astype(np.float32)
