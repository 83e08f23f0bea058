"""Assembly kernel: write one amplifier's overscan-corrected, scaled data into the detector image.

Pure numpy. The amplifier's block is written straight into a (possibly mirrored) view of the output,
so placing an amplifier costs no temporary of the frame's size.
"""

from __future__ import annotations

import numpy as np

__all__ = ["place_amplifier"]

Bounds = tuple[int, int, int, int]


def _view(out: np.ndarray, dest: Bounds, *, flip_x: bool, flip_y: bool) -> np.ndarray:
    ymin, ymax, xmin, xmax = dest
    view = out[ymin:ymax, xmin:xmax]
    return view[:: -1 if flip_y else 1, :: -1 if flip_x else 1]


def place_amplifier(
    out: np.ndarray,
    block: np.ndarray,
    *,
    dest: Bounds,
    level: np.ndarray | float = 0.0,
    scale: float = 1.0,
    flip_x: bool = False,
    flip_y: bool = False,
) -> None:
    """Write ``(block - level) * scale`` into ``out[dest]``, mirrored as asked, in place.

    Parameters
    ----------
    out : numpy.ndarray
        The 2-D assembled image, written in place (its dtype is kept).
    block : numpy.ndarray
        The amplifier's data section as stored in the raw frame, shape of `dest`.
    dest : (ymin, ymax, xmin, xmax)
        Destination in `out`, 0-based half-open.
    level : numpy.ndarray or float
        Overscan level broadcastable to `block` (raw orientation: (1, 1), (rows, 1) or (1, cols)).
    scale : float
        Factor applied after the subtraction (the gain, for electrons).
    flip_x, flip_y : bool
        Mirror the block along columns / rows on its way into `out`.

    Notes
    -----
    Mirroring is a negative-stride view of the destination, so ``level`` stays in the raw
    orientation and lines up with the rows/columns it was measured on. NaN propagates.

    Examples
    --------
    >>> out = np.zeros((2, 4), dtype=np.float32)
    >>> place_amplifier(out, np.array([[1.0, 2.0], [3.0, 4.0]]), dest=(0, 2, 2, 4), level=1.0,
    ...                 scale=2.0, flip_x=True)
    >>> out
    array([[0., 0., 2., 0.],
           [0., 0., 6., 4.]], dtype=float32)
    """
    view = _view(out, dest, flip_x=flip_x, flip_y=flip_y)
    np.subtract(block, level, out=view, casting="unsafe")
    if scale != 1.0:
        np.multiply(view, scale, out=view, casting="unsafe")
