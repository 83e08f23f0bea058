"""The night page in a real headless Chromium: every picture loads, no script error, not blank."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from ccdflow.cli import write_synthetic_night
from ccdflow.night import load_config, reduce_night

BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(name)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (.ci/run installs "
                                "Debian's chromium; the install may have failed)")

# runs before anything else on the page and, once loaded, writes the findings into the DOM
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.type)), true);
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images: images.length, broken: broken, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("browser-night")
    config = load_config(write_synthetic_night(folder, size=32, n_light=2, seed=5))
    reduce_night(config, scheduler="synchronous", echo=lambda *_: None, progress=False)
    return config.output / "report.html"


def test_every_picture_loads_without_script_errors(page, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("<head>", "<head>" + PROBE, 1))
    result = _chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri(),
                       profile=tmp_path / "profile")
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"the page did not finish loading: {result.stderr[-2000:]}"
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["errors"] == []
    assert probe["broken"] == []
    assert probe["images"] == page.read_text().count("<img") >= 4 * 2 + 4


def test_screenshot_is_not_blank(page, tmp_path):
    shot = tmp_path / "page.png"
    result = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars",
                       page.as_uri(), profile=tmp_path / "profile")
    assert shot.exists(), result.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05  # text, tables and pictures, not a blank page
    # the dark title bar, the light page background and mid-grey pictures are all there
    assert (rgb.mean(axis=2) < 0.25).mean() > 0.01 and (rgb.mean(axis=2) > 0.9).mean() > 0.3
    assert np.unique(rgb.reshape(-1, 3), axis=0).shape[0] > 256
