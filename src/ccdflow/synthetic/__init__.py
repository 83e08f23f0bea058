"""Seeded synthetic raw CCD frames with known truth, for tests, the demo and benchmarks."""

from ccdflow.synthetic.amplifier_night import (
    AmplifierExposure,
    AmplifierNight,
    AmplifierNightTruth,
    write_amplifier_night,
)
from ccdflow.synthetic.amplifiers import AmplifierCamera, make_amplifier_frame
from ccdflow.synthetic.frames import Instrument, SyntheticFrame, Truth, make_frame, make_truth
from ccdflow.synthetic.night import SyntheticNight, write_night

__all__ = ["AmplifierCamera", "AmplifierExposure", "AmplifierNight", "AmplifierNightTruth",
           "Instrument", "SyntheticFrame", "SyntheticNight", "Truth", "make_amplifier_frame",
           "make_frame", "make_truth", "write_amplifier_night", "write_night"]
