"""Replace flagged pixels by linear interpolation along rows, with the error that goes with it (numba)."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["interpolate_rows"]


@numba.njit(nogil=True, cache=True)
def _fill(image, error, bad, has_error):  # pragma: no cover
    ny, nx = image.shape
    out = image.copy()
    err = error.copy()
    filled = np.zeros((ny, nx), dtype=np.bool_)
    for j in range(ny):
        left = -1  # last good column seen
        i = 0
        while i < nx:
            if not bad[j, i]:
                left = i
                i += 1
                continue
            right = i
            while right < nx and bad[j, right]:
                right += 1
            if left < 0 and right >= nx:
                break  # nothing good on this row: left as is
            for k in range(i, right):
                if left < 0:
                    t = 1.0  # before the first good pixel: its value
                elif right >= nx:
                    t = 0.0  # after the last good pixel
                else:
                    t = (k - left) / (right - left)
                a = image[j, left] if left >= 0 else 0.0
                b = image[j, right] if right < nx else 0.0
                out[j, k] = (1.0 - t) * a + t * b
                if has_error:
                    ea = error[j, left] if left >= 0 else 0.0
                    eb = error[j, right] if right < nx else 0.0
                    err[j, k] = np.sqrt((1.0 - t) ** 2 * ea * ea + t * t * eb * eb)
                filled[j, k] = True
            i = right
    return out, err, filled


def interpolate_rows(
    image: np.ndarray, bad: np.ndarray, *, error: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Replace the ``bad`` pixels of each row by linear interpolation between the nearest good ones.

    Parameters
    ----------
    image : numpy.ndarray
        2-D image.
    bad : numpy.ndarray of bool
        Pixels to replace. A pixel that is not bad is never changed.
    error : numpy.ndarray, optional
        1-sigma errors of ``image``, interpolated alongside.

    Returns
    -------
    image : numpy.ndarray
        Float copy with the bad pixels replaced.
    error : numpy.ndarray or None
        Errors of the replaced values (``None`` if none given).
    filled : numpy.ndarray of bool
        The pixels actually replaced (set ``MaskBits.INTERPOLATED`` there).

    Notes
    -----
    Between good pixels at columns ``a < k < b``: ``v_k = (1 - t) v_a + t v_b`` with
    ``t = (k - a) / (b - a)``; its error, the two ends being independent,
    ``sqrt((1 - t)^2 e_a^2 + t^2 e_b^2)`` (not the scatter of the true sky, which interpolation cannot
    know). A bad run touching the row's edge takes the nearest good value (and its error). A row
    without any good pixel is left unchanged and not marked filled. A good pixel that is NaN is
    used as is: flag it to have it replaced.

    Examples
    --------
    >>> img = np.array([[1.0, 9.0, 9.0, 4.0, 9.0]])
    >>> interpolate_rows(img, np.array([[0, 1, 1, 0, 1]], bool))[0].tolist()
    [[1.0, 2.0, 3.0, 4.0, 4.0]]
    """
    data = np.asarray(image, dtype=np.float64)
    has_error = error is not None
    err = np.asarray(error, dtype=np.float64) if has_error else np.zeros_like(data)
    out, out_err, filled = _fill(data, err, np.asarray(bad, dtype=np.bool_), has_error)
    dtype = np.result_type(np.asarray(image).dtype, np.float32)
    return (out.astype(dtype), out_err.astype(dtype) if has_error else None, filled)
