"""Cost of per-amplifier assembly: a 4-amplifier 4096^2 frame against a 1-amplifier 4096^2 frame.

Both frames have the same data area (4096 x 4096) and 32 overscan columns per amplifier; the time is
that of `assemble_frame` (overscan median per amplifier, trim, mirror, place, variance and maps).
Run: ``python benchmarks/bench_amplifiers.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from ccdflow.array.assemble import assemble_frame
from ccdflow.array.detector import Amplifier, Detector
from ccdflow.array.sections import Region

N, OVERSCAN = 4096, 32


def _four_amplifiers() -> tuple[Detector, dict[int, np.ndarray]]:
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
    return Detector(name="quad", amplifiers=tuple(amps), shape=(N, N)), {0: raw}


def _one_amplifier() -> tuple[Detector, dict[int, np.ndarray]]:
    det = Detector.single((N, N + OVERSCAN), overscans=[dict(xmin=N, xmax=N + OVERSCAN, ymin=0, ymax=N)],
                          image_area=dict(xmin=0, xmax=N, ymin=0, ymax=N), gain=1.5, read_noise=3.0)
    raw = np.random.default_rng(0).normal(1000, 5, (N, N + OVERSCAN)).astype(np.float32)
    return det, {0: raw}


def _time(detector, raws, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        assemble_frame(raws, detector=detector, units="electron")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    one = _time(*_one_amplifier(), repeat)
    four = _time(*_four_amplifiers(), repeat)
    print(json.dumps({"one_amplifier_s": round(one, 4), "four_amplifiers_s": round(four, 4),
                      "ratio": round(four / one, 3), "repeat": repeat}, indent=2))


if __name__ == "__main__":
    main()
