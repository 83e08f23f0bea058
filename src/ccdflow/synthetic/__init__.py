"""Seeded synthetic raw CCD frames with known truth, for tests, the demo and benchmarks."""

from ccdflow.synthetic.frames import Instrument, SyntheticFrame, Truth, make_frame, make_truth
from ccdflow.synthetic.night import SyntheticNight, write_night

__all__ = ["Instrument", "SyntheticFrame", "SyntheticNight", "Truth", "make_frame", "make_truth",
           "write_night"]
