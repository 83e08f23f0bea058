"""Overscan correction methods: the built-in ones by name, or any user callable ``f(image, overscans)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from ccdflow.array.params import check_keys, parse_int, parse_number, to_plain_dict
from ccdflow.array.sections import Region
from ccdflow.kernels.overscan import overscan_level

__all__ = [
    "OverscanMethods", "OverscanParams", "UserOverscan", "overscan_correction",
]

#: A user overscan method: takes the raw image and the overscan regions (list of dicts),
#: returns the overscan-corrected image.
UserOverscan = Callable[[np.ndarray, list[dict[str, int]]], np.ndarray]


class OverscanMethods(StrEnum):
    """Built-in overscan corrections; each returns the correction and its variance.

    Examples
    --------
    >>> OverscanMethods("median_per_line") is OverscanMethods.median_per_line
    True
    """

    median = "median"
    """One level: the median of every overscan pixel."""
    mean = "mean"
    """One level: the mean of every overscan pixel."""
    clipped_mean = "clipped_mean"
    """One level: the mean after iterative sigma clipping (``OverscanParams.sigma``, ``maxiters``)."""
    median_per_line = "median_per_line"
    """One level per image row (for a column strip) or per column (for a row strip)."""
    polynomial = "polynomial"
    """A smooth polynomial (``OverscanParams.order``) fitted to the per-line medians."""


@dataclass(frozen=True, kw_only=True)
class OverscanParams:
    """Knobs of the built-in overscan methods.

    Parameters
    ----------
    sigma : float
        Clipping threshold of ``clipped_mean``.
    maxiters : int
        Clipping iterations of ``clipped_mean`` at most.
    order : int
        Degree of the ``polynomial`` fit.

    Examples
    --------
    >>> OverscanParams(order=2).to_dict()
    {'sigma': 3.0, 'maxiters': 5, 'order': 2}
    """

    sigma: float = 3.0
    maxiters: int = 5
    order: int = 3

    def __post_init__(self):
        object.__setattr__(self, "sigma", parse_number(self.sigma, key="sigma", strict=True))
        object.__setattr__(self, "maxiters", parse_int(self.maxiters, key="maxiters", minimum=1))
        object.__setattr__(self, "order", parse_int(self.order, key="order", minimum=0))

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain values."""
        return to_plain_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, key: str = "overscan_params") -> OverscanParams:
        """Build from a mapping; an unknown field raises `ConfigError` naming it."""
        check_keys(cls, data, key=key)
        return cls(**data)


def overscan_correction(
    raw: np.ndarray,
    overscans: Sequence[Region],
    method: OverscanMethods | UserOverscan,
    params: OverscanParams = OverscanParams(),
) -> tuple[np.ndarray, np.ndarray | float]:
    """The overscan level to subtract from a raw frame and the variance of that level.

    Parameters
    ----------
    raw : numpy.ndarray
        The raw frame (float32), overscan included.
    overscans : sequence of Region
        The overscan areas (not empty).
    method : OverscanMethods or callable
        A built-in method, or ``f(image, overscans) -> corrected image``.
    params : OverscanParams
        Knobs of the built-in methods.

    Returns
    -------
    level : numpy.ndarray
        Broadcastable to ``raw``: (1, 1) for one level, (rows, 1) or (1, columns) per line, the
        whole frame's shape for a user method (``raw - f(raw, overscans)``).
    variance : numpy.ndarray or float
        Variance of the level (0 for a user method).

    Raises
    ------
    ValueError
        If a user method returns an image of another shape.
    """
    if callable(method) and not isinstance(method, OverscanMethods):
        corrected = np.asarray(method(raw, [r.to_dict() for r in overscans]), dtype=np.float32)
        if corrected.shape != raw.shape:
            raise ValueError(
                f"user overscan method returned shape {corrected.shape}, expected {raw.shape}"
            )
        return raw - corrected, 0.0
    return overscan_level(
        raw, [r.bounds for r in overscans], method=OverscanMethods(method).value,
        sigma=params.sigma, maxiters=params.maxiters, order=params.order,
    )
