"""Both reports rendered in headless Chromium at 1280 px: no horizontal overflow, every image loaded; screenshots
kept (``COR2VOX_SCREENSHOTS=DIR`` keeps them in DIR, else in the test's temporary folder)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from report_fixtures import build_reports

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium on PATH (Debian: apt-get install "
                                                         "chromium; `make test` installs it where it can)")
WIDTH = 1280
#: appended to a copy of the page: measures layout and images after load, writes the result into the DOM
PROBE = ("<script>window.addEventListener('load',()=>setTimeout(()=>{const d=document.documentElement;"
         "const r={scrollWidth:d.scrollWidth,clientWidth:d.clientWidth,height:d.scrollHeight,"
         "images:[...document.images].map(i=>({src:i.getAttribute('src'),complete:i.complete,"
         "naturalWidth:i.naturalWidth}))};const p=document.createElement('pre');p.id='c2v-probe';"
         "p.textContent=JSON.stringify(r);document.body.appendChild(p);},300));</script>")


def _chromium(*args: str, timeout: int = 120) -> str:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
           "--no-first-run", "--disable-dev-shm-usage", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return done.stdout


def measure(page: Path) -> dict:
    """Layout and image facts of ``page`` at 1280 px (a probe script runs in a copy beside it)."""
    probe = page.with_name("_probe_" + page.name)
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        dom = _chromium(f"--window-size={WIDTH},900", "--virtual-time-budget=8000", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = re.search(r'<pre id="c2v-probe">(.*?)</pre>', dom, re.S)
    assert found, "the page did not finish loading in Chromium"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def screenshot(page: Path, height: int, folder: Path) -> Path:
    out = folder / (page.stem + f"_{WIDTH}px.png")
    _chromium(f"--window-size={WIDTH},{min(height, 16000)}", "--virtual-time-budget=4000",
              f"--screenshot={out}", page.as_uri())
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    return build_reports(tmp_path_factory.mktemp("browser"))


@pytest.mark.parametrize("which", ["participant", "group"])
def test_report_fits_1280px_and_every_image_loads(rendered, which, tmp_path):
    facts = measure(rendered[which])
    assert facts["scrollWidth"] <= facts["clientWidth"], f"horizontal overflow: {facts['scrollWidth']} px"
    assert facts["images"], "no images"
    broken = [i["src"] for i in facts["images"] if not (i["complete"] and i["naturalWidth"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    folder = Path(os.environ.get("COR2VOX_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = screenshot(rendered[which], facts["height"], folder)
    assert shot.is_file() and shot.stat().st_size > 10_000
    from PIL import Image

    assert Image.open(shot).size[0] == WIDTH
