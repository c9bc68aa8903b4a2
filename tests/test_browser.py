"""End-to-end: the search page in headless Chromium against a live uvicorn on loopback.

Skips unless /usr/bin/chromium, /usr/bin/chromedriver and selenium are present
(`apt-get install -y chromium chromium-driver`, `pip install selenium`). Uses the fake engine
(realistic documents and WordPiece-style explain tokens); leaves a screenshot in
artifacts/browser/search.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sparseretr.service import Settings, create_app
from test_service_fakes import FakeEngine

from sparseretr.fusion import DEFAULTS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"

if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
    pytest.skip("chromium / chromedriver not installed", allow_module_level=True)
selenium = pytest.importorskip("selenium")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROME_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-proxy-server", "--window-size=1280,1000",
]


ENGINE = FakeEngine()  # every mode, BM25 included: the page offers the BM25 share


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    import uvicorn

    settings = Settings(_env_file=None, api_key=None)  # type: ignore[call-arg]
    app = create_app(settings, ENGINE)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # loopback only, free port chosen by the OS
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager go online
    profile = tempfile.mkdtemp(prefix="sparseretr-chrome-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    drv = webdriver.Chrome(options=opts, service=Service(executable_path=str(CHROMEDRIVER)))
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _results(drv: webdriver.Chrome, timeout: float = 15) -> list:
    WebDriverWait(drv, timeout).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "ol#results li.hit")))
    return drv.find_elements(By.CSS_SELECTOR, "ol#results li.hit")


def test_search_page_highlights_matched_tokens(base_url: str, driver: webdriver.Chrome) -> None:
    driver.get(base_url + "/")
    WebDriverWait(driver, 15).until(
        lambda d: "docs" in d.find_element(By.ID, "index-info").text)
    assert driver.find_element(By.ID, "m-hybrid").is_selected()  # the service default
    box = driver.find_element(By.ID, "q")
    box.send_keys("chaperone binding and protein folding in cells")
    box.send_keys(Keys.ENTER)
    hits = _results(driver)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "search.png"))
    assert "Chaperone binding" in hits[0].find_element(By.CSS_SELECTOR, ".title").text
    marks = hits[0].find_elements(By.CSS_SELECTOR, ".snippet mark")
    assert marks, "no highlighted tokens"
    marked = {m.text.lower() for m in marks}
    assert {"chaperones", "binding"} <= marked
    chips = [c.text for c in hits[0].find_elements(By.CSS_SELECTOR, ".chip .tok")]
    assert "##ing" in chips and "chaperone" in chips
    assert hits[0].find_elements(By.CSS_SELECTOR, ".chip.expansion")  # expansion term chip
    meta = hits[0].find_element(By.CSS_SELECTOR, ".meta").text
    assert "sparse" in meta and "dense" in meta  # hybrid components
    share = driver.find_element(By.ID, "bm25_weight")  # shown, at the service's default
    assert share.is_displayed() and float(share.get_attribute("value")) == pytest.approx(1 / 3)
    assert ENGINE.calls[-1]["bm25_weight"] == pytest.approx(DEFAULTS["bm25_weight"])
    driver.execute_script("arguments[0].value = 0.2", share)  # a user's own share is sent
    n = len(ENGINE.calls)
    box.send_keys(Keys.ENTER)
    WebDriverWait(driver, 15).until(lambda d: len(ENGINE.calls) > n)
    assert ENGINE.calls[-1]["bm25_weight"] == pytest.approx(0.2)
    status = driver.find_element(By.ID, "status").text
    assert "mode hybrid" in status and "ms" in status
    assert "q=chaperone" in driver.current_url


def test_mode_switch_and_full_document(base_url: str, driver: webdriver.Chrome) -> None:
    driver.get(base_url + "/?q=vitamin+D+cancer")
    hits = _results(driver)
    assert hits[0].get_attribute("data-id") == "4983"
    driver.find_element(By.CSS_SELECTOR, "label[for=m-bm25]").click()  # re-runs the search
    WebDriverWait(driver, 15).until(
        lambda d: "mode bm25" in d.find_element(By.ID, "status").text)
    hits = _results(driver)
    assert "dense" not in hits[0].find_element(By.CSS_SELECTOR, ".meta").text
    assert driver.find_element(By.ID, "fusion-opts").get_attribute("hidden") is not None
    hits[0].find_element(By.CSS_SELECTOR, ".title").click()
    full = WebDriverWait(driver, 15).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "li.hit .fulltext")))
    assert "Supplementation trials" in full.text
    assert not driver.find_element(By.ID, "error").is_displayed()
