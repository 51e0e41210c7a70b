"""report.html in a real browser: Debian's headless Chromium, driven by selenium through chromedriver.

The page is opened from a file, as a person opens it from a laptop or a bucket download. Checked: no
console message of level warning or worse, no request other than the file itself (data: URIs are not
requests to anywhere), every image decoded (naturalWidth > 0), every curve laid out, and a full-page
screenshot that is not blank. `scripts/system-packages` installs chromium and chromium-driver where it
can; elsewhere the test skips and says why. Set ARGOMLOPS_SCREENSHOTS=DIR to keep the screenshots.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from run_folders import make_run
from test_report import EVALUATION, EVENTS

from argomlops.trainer.report import build_report
from argomlops.trainer.storage import open_store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1280,1000",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (bash scripts/system-packages installs them as root)",
)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # The system chromedriver, given explicitly: selenium must not try to download one.
    browser = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield browser
    finally:
        browser.quit()


def full_page_png(browser: Any) -> bytes:
    """A screenshot of the whole page, not only the window."""
    import base64

    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    options = {"format": "png", "captureBeyondViewport": True, "clip": clip}
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", options)
    return base64.b64decode(shot["data"])


def requests_made(browser: Any, page_url: str) -> list[str]:
    """URLs of every request made for the document at `page_url` (itself included), from DevTools' log.

    Requests of the browser's own pages (the new-tab page of a fresh profile, chrome://...) are for
    other documents and are left out.
    """
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent" and message["params"].get("documentURL") == page_url:
            urls.append(message["params"]["request"]["url"])
    return urls


def pages(tmp_path: Path) -> dict[str, Path]:
    root = open_store(str(tmp_path / "runs"))
    parent = make_run(root, "2026-11-26_09h00m00s")
    child = make_run(
        root,
        "2026-11-27_09h00m00s",
        parent=parent.uri,
        done_epochs={"vqvae": 8, "pixelcnn": 5},
        last_exit={"code": 143, "at": "t1", "error": None},
        events=EVENTS,
        evaluation=EVALUATION,
    )
    one = Path(child.uri) / "report.html"
    one.write_text(build_report([child], page_dir=child.uri))
    two = tmp_path / "compare.html"
    two.write_text(build_report([parent, child], page_dir=str(tmp_path)))
    return {"one": one, "compare": two}


@pytest.mark.parametrize("which", ["one", "compare"])
def test_the_page_loads_offline_with_every_picture(driver: Any, tmp_path: Path, which: str) -> None:
    page = pages(tmp_path)[which]
    url = page.resolve().as_uri()
    driver.get_log("performance")  # drop what an earlier page left
    driver.get(url)
    assert driver.execute_script("return document.readyState") == "complete"

    console = [e for e in driver.get_log("browser") if e["level"] in ("WARNING", "SEVERE")]
    assert console == []
    made = requests_made(driver, url)
    assert url in made  # the log has teeth: the page's own load is in it
    assert [u for u in made if u != url and not u.startswith("data:")] == []
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0

    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])"
    )
    assert images and all(complete and width > 0 and height > 0 for complete, width, height, _ in images), images
    curves = driver.execute_script(
        "return Array.from(document.querySelectorAll('svg')).map(s => s.getBoundingClientRect().width)"
    )
    assert len(curves) == 2 and min(curves) > 400

    png = full_page_png(driver)
    keep = os.environ.get("ARGOMLOPS_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"report-{which}.png").write_bytes(png)
    with Image.open(io.BytesIO(png)) as shot:
        pixels = np.asarray(shot.convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] > 2000 and pixels.shape[1] >= 1000  # the whole page, not an empty viewport
    inked = (pixels < 200).any(axis=2).mean()
    colours = len(np.unique(pixels.reshape(-1, 3)[::97], axis=0))
    assert inked > 0.05 and pixels.std() > 20 and colours > 200, (inked, pixels.std(), colours)
