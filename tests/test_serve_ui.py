"""The web UI in headless Chromium: upload an image, ask, see a streamed answer."""

from __future__ import annotations

import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from .conftest import REPO
from .serve_utils import live_server

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def test_ui_uploads_an_image_and_streams_an_answer():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is required for the UI test (apt-get install chromium)"
    ARTIFACTS.mkdir(exist_ok=True)
    with live_server(ui=True) as (base, _engine, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(base + "/")
            page.set_input_files("#image", str(Path(REPO) / "examples" / "shapes.png"))
            page.wait_for_selector("#preview[src^='data:image']", state="attached")
            page.fill("#max_tokens", "12")
            page.fill("#question", "What shapes are in this image?")
            page.click("#send")
            page.wait_for_selector(".msg.assistant[data-done='1']", timeout=60_000)
            answer = page.text_content(".msg.assistant")
            assert answer.startswith("FUSION: ") and len(answer) > len("FUSION: ")
            assert page.query_selector(".msg.error") is None
            # A second turn reuses the conversation (the image stays with the first question).
            page.fill("#question", "And then?")
            page.click("#send")
            page.wait_for_function(
                "document.querySelectorAll(\".msg.assistant[data-done='1']\").length == 2", timeout=60_000
            )
            page.screenshot(path=str(ARTIFACTS / "ui_chat.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "ui_chat.png").stat().st_size > 1000
