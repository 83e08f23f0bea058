"""Cost of calibrating a 4-amplifier 4096^2 frame against a 1-amplifier 4096^2 frame.

Both frames have the same data area (4096 x 4096) and 32 overscan columns per amplifier, and are
calibrated with a master bias, dark and flat (`calibrate_array`, the per-frame task of the
`Calibrator` and of the night): overscan per amplifier, trim, mirror, place, bias, scaled dark,
flat, the error model with each amplifier's own gain and read noise. The two are timed
alternately in one run, so the ratio is fair on a shared machine. Also timed: the lazy path,
`Calibrator.calibrate(frame)` on dask, from the FITS file on disk.

Run: ``python benchmarks/bench_amplifiers.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from ccdflow.array.calibration import CalibrationParams, Master, Masters, calibrate_array
from ccdflow.array.detector import Amplifier, Detector
from ccdflow.array.sections import Region
from ccdflow.calibrator import Calibrator

N, OVERSCAN = 4096, 32


def _four_amplifiers() -> tuple[Detector, np.ndarray]:
    half = N // 2
    amps = []
    for i, (row, col) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        x0 = col * (half + OVERSCAN)
        amps.append(Amplifier(
            name=str(i), data=Region(xmin=x0, xmax=x0 + half, ymin=row * half, ymax=(row + 1) * half),
            overscans=(Region(xmin=x0 + half, xmax=x0 + half + OVERSCAN, ymin=row * half,
                              ymax=(row + 1) * half),),
            destination=Region(xmin=col * half, xmax=(col + 1) * half, ymin=row * half,
                               ymax=(row + 1) * half),
            flip_x=col == 1, gain=1.0 + i, read_noise=3.0))
    raw = np.random.default_rng(0).normal(1000, 5, (N, 2 * (half + OVERSCAN))).astype(np.float32)
    return Detector(name="quad", amplifiers=tuple(amps), shape=(N, N)), raw


def _one_amplifier() -> tuple[Detector, np.ndarray]:
    det = Detector.single((N, N + OVERSCAN), overscans=[dict(xmin=N, xmax=N + OVERSCAN, ymin=0, ymax=N)],
                          image_area=dict(xmin=0, xmax=N, ymin=0, ymax=N), gain=1.5, read_noise=3.0)
    raw = np.random.default_rng(0).normal(1000, 5, (N, N + OVERSCAN)).astype(np.float32)
    return det, raw


def _masters() -> Masters:
    rng = np.random.default_rng(1)
    make = lambda level, scale: rng.normal(level, scale, (N, N)).astype(np.float32)  # noqa: E731
    return Masters(bias=Master(make(0, 1), error=make(1, 0.01)),
                   dark=Master(make(0.1, 0.01), error=make(0.01, 0.001)),
                   flat=Master(make(1, 0.01), error=make(0.002, 0.0001), norm=1.0))


def _calibrate(detector: Detector, raw: np.ndarray, masters: Masters) -> None:
    calibrate_array(raw, params=CalibrationParams(detector=detector, exptime=60.0),
                    masters=masters, dark_scale=60.0, norm=1.0)


def _lazy(calibrator: Calibrator, path: Path) -> None:
    calibrator.calibrate(str(path)).image.compute(scheduler="sync")


def _alternate(cases: dict, repeat: int) -> dict[str, float]:
    """Median seconds of each case, the cases run in turn so that load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for run in cases.values():
        run()  # compile and warm the caches
    for _ in range(repeat):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    masters = _masters()
    (one, raw1), (four, raw4) = _one_amplifier(), _four_amplifiers()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, raw in (("one", raw1), ("four", raw4)):
            paths[name] = Path(tmp) / f"{name}.fits"
            fits.writeto(paths[name], np.round(raw).astype(np.uint16), fits.Header([("EXPTIME", 60.0)]))
        kwargs = dict(master_bias=masters.bias, master_dark=masters.dark, master_flat=masters.flat)
        lazy_one = Calibrator(amplifiers=one, **kwargs)
        lazy_four = Calibrator(amplifiers=four, **kwargs)
        seconds = _alternate({
            "one_amplifier": lambda: _calibrate(one, raw1, masters),
            "four_amplifiers": lambda: _calibrate(four, raw4, masters),
            "lazy_one_amplifier": lambda: _lazy(lazy_one, paths["one"]),
            "lazy_four_amplifiers": lambda: _lazy(lazy_four, paths["four"]),
        }, repeat)
    print(json.dumps({
        **{f"{k}_s": round(v, 4) for k, v in seconds.items()},
        "ratio_calibrate_array": round(seconds["four_amplifiers"] / seconds["one_amplifier"], 3),
        "ratio_lazy": round(seconds["lazy_four_amplifiers"] / seconds["lazy_one_amplifier"], 3),
        "repeat": repeat}, indent=2))


if __name__ == "__main__":
    main()
