"""ccdflow's ccdclip and avsigclip against IRAF ``imcombine`` itself, on the same FITS files.

    python benchmarks/bench_iraf_clip.py [--frames 5] [--size 512]

Needs IRAF's command language (Debian packages ``iraf`` and ``iraf-noao``, driven as
``irafcl < script.cl``); without a working ``irafcl`` it says so and exits 0. Reports, per rejection,
the fraction of pixels whose rejected count agrees and the times side by side.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
from astropy.io import fits

from ccdflow import CombineParams, combine, open_stack
from ccdflow.kernels.clip import combine_block

READ_NOISE, GAIN, SIGMA = 5.0, 2.0, 3.0

SCRIPT = """images
immatch
imcombine ("@in.lis", "out_{reject}.fits", nrejmasks="nrej_{reject}.pl", combine="median",
  reject="{reject}", mclip=yes, lsigma={sigma}, hsigma={sigma}, rdnoise={rn}, gain={gain},
  snoise=0., nkeep=0, scale="none", zero="none", weight="none", offsets="none",
  masktype="none", lthresh=INDEF, hthresh=INDEF, logfile="")
imcopy ("nrej_{reject}.pl", "nrej_{reject}.fits")
logout
"""


def write_frames(directory: Path, frames: int, size: int) -> np.ndarray:
    """Frames with a level gradient, CCD noise and cosmic rays; returns the stack."""
    rng = np.random.default_rng(0)
    level = np.broadcast_to(np.linspace(10.0, 5000.0, size), (size, size))
    sigma = np.sqrt((READ_NOISE / GAIN) ** 2 + level / GAIN)
    stack = rng.normal(level, sigma, (frames, size, size)).astype(np.float32)
    hits = rng.random(stack.shape) < 0.02
    stack[hits] += rng.uniform(50.0, 2000.0, hits.sum()).astype(np.float32)
    names = []
    for i, frame in enumerate(stack):
        names.append(f"f{i:02d}.fits")
        fits.PrimaryHDU(frame).writeto(directory / names[-1])
    (directory / "in.lis").write_text("\n".join(names) + "\n")
    return stack


def run_iraf(directory: Path, reject: str) -> tuple[np.ndarray, float] | str:
    """Rejected counts per pixel from IRAF and the wall time, or why IRAF could not run."""
    script = SCRIPT.format(reject=reject, sigma=SIGMA, rn=READ_NOISE, gain=GAIN)
    t0 = time.perf_counter()
    # the CL dies at startup without USER in its environment (as under cron or in containers)
    env = {**os.environ, "USER": os.environ.get("USER") or getpass.getuser() or "iraf"}
    proc = subprocess.run(["irafcl"], input=script, text=True, capture_output=True, cwd=directory,
                          timeout=600, check=False, env=env)
    seconds = time.perf_counter() - t0
    out = directory / f"nrej_{reject}.fits"
    if not out.exists():
        return f"irafcl did not produce {out.name}: {(proc.stdout + proc.stderr).strip()[-300:]}"
    return fits.getdata(out).astype(np.int64), seconds


def run_ccdflow(directory: Path, frames: int, reject: str) -> tuple[np.ndarray, float, float]:
    """Rejected counts per pixel from ccdflow and two wall times: the whole combine from the same
    files on disk (lazy open, read, reject, combine: what IRAF's task does), and the kernel alone."""
    params = CombineParams(clip=reject, method="median", sigma_lower=SIGMA, sigma_upper=SIGMA,
                           maxiters=None, nkeep=0, read_noise=READ_NOISE, gain=GAIN)
    paths = [directory / f"f{i:02d}.fits" for i in range(frames)]
    combine_block(np.zeros((frames, 2, 4), np.float32), **params.kernel_kwargs())  # compile first
    t0 = time.perf_counter()
    result = combine(open_stack(paths), params=params)
    data, count = dask.compute(result.data, result.count, scheduler="threads")
    disk = time.perf_counter() - t0
    stack = np.stack([fits.getdata(p) for p in paths])
    t0 = time.perf_counter()
    combine_block(stack, **params.kernel_kwargs())
    kernel = time.perf_counter() - t0
    return frames - count.astype(np.int64), disk, kernel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    if shutil.which("irafcl") is None:
        print("IRAF is not installed (no irafcl): skipped. apt-get install iraf iraf-noao")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_frames(directory, args.frames, args.size)
        for reject in ("ccdclip", "avsigclip"):
            iraf = run_iraf(directory, reject)
            if isinstance(iraf, str):
                print(f"IRAF could not run ({iraf}): skipped.")
                return 0
            (iraf_rej, iraf_s), (ours, disk_s, kernel_s) = iraf, run_ccdflow(directory, args.frames,
                                                                               reject)
            agree = float(np.mean(iraf_rej == ours))
            print(f"{reject:10s} {args.frames} x {args.size}^2: pixels with equal rejected count "
                  f"{agree:.6f} (rejected IRAF {iraf_rej.sum()}, ccdflow {ours.sum()}); "
                  f"IRAF imcombine {iraf_s:.2f} s (task incl. CL start), ccdflow from disk "
                  f"{disk_s:.2f} s ({iraf_s / disk_s:.1f}x), kernel alone {kernel_s:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
