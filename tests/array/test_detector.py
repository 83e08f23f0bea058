import pickle

import pytest

from ccdflow.array.detector import Amplifier, Detector
from ccdflow.array.sections import Region
from ccdflow.errors import ConfigError


def _amp(name, x0, **kw):
    return Amplifier(name=name, data=Region(xmin=0, xmax=4, ymin=0, ymax=3),
                     destination=Region(xmin=x0, xmax=x0 + 4, ymin=0, ymax=3), **kw)


def test_round_trip_and_pickle():
    det = Detector(name="ccd", shape=(3, 8), binning=(2, 2), amplifiers=(
        _amp("A", 0, overscans=(Region(xmin=4, xmax=6, ymin=0, ymax=3),), gain=1.5,
             gain_source="header GAINA"),
        _amp("B", 4, hdu="im2", flip_x=True, saturation=60000.0, saturation_source="config"),
    ))
    again = Detector.from_dict(det.to_dict())
    assert again == det and again.layout_key == det.layout_key
    assert pickle.loads(pickle.dumps(det)) == det
    assert det.hdus == (0, "im2")
    assert det.amplifier("B").provenance == {"gain": "default", "read_noise": "default",
                                             "saturation": "config"}


def test_sections_may_be_fits_strings_in_a_dict():
    amp = Amplifier.from_dict({"name": "A", "data": "[1:4,1:3]", "destination": "[5:8,1:3]",
                               "overscans": ["[5:6,1:3]"]})
    assert amp.destination == Region(xmin=4, xmax=8, ymin=0, ymax=3)
    assert amp.overscans == (Region(xmin=4, xmax=6, ymin=0, ymax=3),)


def test_single_amplifier_detector_from_calibrator_parameters():
    det = Detector.single((4116, 4096), overscans=[dict(xmin=0, xmax=4096, ymin=0, ymax=20)],
                          image_area=dict(xmin=0, xmax=4096, ymin=20, ymax=4116), gain=16.0)
    (amp,) = det.amplifiers
    assert det.shape == (4096, 4096)
    assert amp.data.ymin == 20 and amp.destination == Region(xmin=0, xmax=4096, ymin=0, ymax=4096)
    assert (amp.gain, amp.gain_source, amp.read_noise, amp.read_noise_source) == (
        16.0, "config", 0.0, "default")
    whole = Detector.single((5, 6))
    assert whole.shape == (5, 6) and whole.amplifiers[0].overscans == ()


def test_destination_must_match_the_data_shape():
    with pytest.raises(ConfigError, match=r"amplifiers\.A\.destination.*differs"):
        Amplifier(name="A", data=Region(xmin=0, xmax=4, ymin=0, ymax=3),
                  destination=Region(xmin=0, xmax=3, ymin=0, ymax=3))


def test_destinations_inside_and_not_overlapping():
    with pytest.raises(ConfigError, match="outside the detector shape"):
        Detector(name="d", amplifiers=(_amp("A", 6),), shape=(3, 8))
    with pytest.raises(ConfigError, match="overlaps amplifier A"):
        Detector(name="d", amplifiers=(_amp("A", 0), _amp("B", 3)), shape=(3, 8))
    with pytest.raises(ConfigError, match="unique"):
        Detector(name="d", amplifiers=(_amp("A", 0), _amp("A", 4)), shape=(3, 8))
    with pytest.raises(ConfigError, match="at least one"):
        Detector(name="d", amplifiers=(), shape=(3, 8))


@pytest.mark.parametrize(("field", "value", "match"), [
    ("gain", 0.0, "gain"), ("read_noise", -1.0, "read_noise"), ("gain_source", "guess", "source"),
    ("hdu", -1, "hdu"), ("flip_x", 1, "flip_x"),
])
def test_amplifier_validation(field, value, match):
    with pytest.raises(ConfigError, match=match):
        _amp("A", 0, **{field: value})


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match=r"detector\.colour"):
        Detector.from_dict({"name": "d", "shape": [3, 4], "amplifiers": [], "colour": 1})
    with pytest.raises(ConfigError, match=r"amplifiers\[0\]\.gian"):
        Detector.from_dict({"name": "d", "shape": [3, 4], "amplifiers": [
            {"name": "A", "data": "[1:4,1:3]", "destination": "[1:4,1:3]", "gian": 2}]})
    with pytest.raises(ConfigError, match="binning"):
        Detector(name="d", amplifiers=(_amp("A", 0),), shape=(3, 8), binning=(0, 1))
