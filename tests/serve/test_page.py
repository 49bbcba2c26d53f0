"""The moderator's page in a real headless browser (Debian chromium + chromium-driver via Selenium), served by the
real `mmf_pe serve` command: upload a meme, see its score and regions; a bad file shows an error."""
import os
import shutil
import subprocess
import sys
import time

import pytest
import requests

from mmf_pe import REPO_ROOT
from tests.serve.helpers import free_port

PACKAGES = "Debian packages chromium and chromium-driver (apt-get install chromium chromium-driver)"
SCREENSHOT = os.path.join(REPO_ROOT, "logs", "serve", "moderator_page.png")
OCR_SCREENSHOT = os.path.join(REPO_ROOT, "logs", "serve", "moderator_page_ocr.png")  # caption filled by OCR


def browser_paths():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(f"the browser test needs the {PACKAGES}; not found on this machine")
    pytest.importorskip("selenium", reason="the browser test needs selenium (requirements-dev.txt)")
    return chromium, driver


@pytest.fixture
def cli_server(served, tmp_path):
    """`mmf_pe serve <folder>` as a subprocess on a free port of 127.0.0.1."""
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    command = [sys.executable, "-m", "mmf_pe.cli", "serve", served["served"], "--port", str(port),
               "--allow-random-weights", "--default-adapter", "pe_img", "--poll-s", "0.5"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                               env=dict(os.environ, MMF_PE_ADMIN_TOKEN=""))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise AssertionError("server did not become ready:\n" + (tmp_path / "serve.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_moderator_page_scores_an_upload_and_shows_errors(served, cli_server, tmp_path):
    chromium, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1000,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        wait = WebDriverWait(browser, 90)
        browser.get(cli_server + "/")
        wait.until(lambda b: len(Select(b.find_element(By.ID, "adapter")).options) >= 3)
        assert Select(browser.find_element(By.ID, "adapter")).first_selected_option.get_attribute("value") == "pe_img"
        browser.find_element(By.ID, "image").send_keys(served["meme"])
        caption = "look at this lovely family"
        if shutil.which("tesseract"):  # the upload fills the caption box by OCR (Debian tesseract-ocr)
            wait.until(lambda b: b.find_element(By.ID, "ocr-note").get_attribute("data-state") == "done")
            with open(served["meme"], "rb") as f:
                read = requests.post(f"{cli_server}/v1/ocr", files={"image": ("01.png", f.read())}, timeout=60).json()
            assert read["text"] and browser.find_element(By.ID, "text").get_attribute("value") == read["text"]
            assert "Caption read from the image" in browser.find_element(By.ID, "ocr-note").text
            os.makedirs(os.path.dirname(OCR_SCREENSHOT), exist_ok=True)
            browser.save_screenshot(OCR_SCREENSHOT)
            browser.find_element(By.ID, "text").clear()  # editable before scoring
        browser.find_element(By.ID, "text").send_keys(caption)
        browser.find_element(By.ID, "score").click()
        shown = wait.until(ec.presence_of_element_located((By.ID, "probability"))).text
        wait.until(lambda b: int(b.find_element(By.ID, "canvas").get_attribute("data-drawn") or 0) >= 1)
        with open(served["meme"], "rb") as f:
            api = requests.post(f"{cli_server}/v1/score", data={"text": caption, "adapter": "pe_img"},
                                files={"image": ("01.png", f.read())}, timeout=60).json()
        assert shown == f"{api['probability']:.4f}"
        assert "hateful" in browser.find_element(By.ID, "result").text
        assert browser.find_element(By.ID, "scored-text").text == caption and api["text_source"] == "client"
        os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
        browser.save_screenshot(SCREENSHOT)

        bad = tmp_path / "not_a_meme.png"
        bad.write_text("plain text, not an image")
        browser.find_element(By.ID, "image").send_keys(str(bad))
        browser.find_element(By.ID, "score").click()
        error = wait.until(lambda b: b.find_element(By.ID, "error").text or None)
        assert "Error 415" in error and "not an image" in error
        assert requests.get(f"{cli_server}/healthz", timeout=10).status_code == 200
    finally:
        browser.quit()
