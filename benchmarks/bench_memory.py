"""A 2048^2 night on a ``dask scheduler`` + ``dask worker --memory-limit`` cluster, per limit.

For each worker memory limit the night (masters, lights, a stack) runs through ``ccdflow run``;
the result is the exit status and the failures, so the smallest limit that reduces the whole
night can be read off. Run: ``python benchmarks/bench_memory.py [--size 2048] [--limits 600MB ...]``.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from distributed import Client

from ccdflow import synthetic as syn

BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _night(folder: Path, size: int) -> Path:
    inst = syn.Instrument(ny=size, nx=size, n_overscan=32)
    night = syn.write_night(folder, instrument=inst, filters=("V",), n_bias=5, n_dark=5,
                            dark_exptimes=(60.0,), n_flat=5, n_light=3, seed=1)
    (folder / "night.yaml").write_text(yaml.safe_dump({
        "input": {"filelist": night.filelist.name}, "output": "reduced", "stack_lights": True,
        "calibration": {"overscans": "header", "image_area": "header"}}))
    return folder / "night.yaml"


def run_with_limit(config: Path, limit: str) -> dict:
    port = _port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen([BIN / "dask", "worker", address, "--nworkers", "1", "--nthreads",
                                   "1", "--memory-limit", limit, "--no-dashboard"],
                                  stderr=subprocess.DEVNULL))
    try:
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(1, timeout=60)
        start = time.perf_counter()
        run = subprocess.run([BIN / "ccdflow", "run", "-q", config, "--scheduler", address],
                             capture_output=True, text=True, timeout=1800)
        report = json.loads((config.parent / "reduced/report.json").read_text())
        return {"limit": limit, "exit": run.returncode, "seconds": round(time.perf_counter() - start, 1),
                "aborted": report.get("aborted"), "failures": report.get("failures")}
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--limits", nargs="+", default=["300MB", "400MB", "600MB", "1GB"])
    args = parser.parse_args()
    for limit in args.limits:
        with tempfile.TemporaryDirectory() as folder:
            config = _night(Path(folder), args.size)
            print(json.dumps({"size": args.size, **run_with_limit(config, limit)}), flush=True)


if __name__ == "__main__":
    main()
