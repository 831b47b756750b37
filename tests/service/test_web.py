"""The search page in headless Chromium (Debian's package), driven by Playwright."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.service.conftest import UCM_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page(server):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium package is not installed")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(server.base_url + "/")
        yield page
        browser.close()


def test_page_shows_service_info(page):
    page.wait_for_function("document.getElementById('info').textContent.includes('scenes')")
    assert "tiny-vit" in page.inner_text("#info")


def test_text_search_fills_grid(page, tmp_path_factory):
    page.fill("#query-text", "boats in a harbor")
    page.fill("#query-k", "6")
    page.click("#text-submit")
    page.wait_for_selector("#grid .card img")
    assert page.locator("#grid .card").count() == 6
    first = page.locator("#grid .card").first
    assert "score" in first.inner_text()
    page.wait_for_function("Array.from(document.querySelectorAll('#grid img')).every(i => i.complete && i.naturalWidth > 0)")
    assert not page.is_visible("#message")
    page.screenshot(path=str(tmp_path_factory.mktemp("screens") / "text-search.png"), full_page=True)


def test_image_upload_shows_captions_and_scenes(page):
    page.set_input_files("#query-file", str(UCM_DIR / "images" / "beach" / "beach20.jpg"))
    page.wait_for_selector("#caption-list li")
    assert page.locator("#caption-list li").count() > 0
    assert page.locator("#grid .card").count() > 0


def test_errors_and_empty_results_show_message(page, tmp_path):
    page.fill("#query-text", "x" * 600)
    page.click("#text-submit")
    page.wait_for_selector("#message.error")
    assert "500 characters" in page.inner_text("#message")

    not_image = tmp_path / "notes.txt"
    not_image.write_text("not an image")
    page.set_input_files("#query-file", str(not_image))
    page.wait_for_function("document.getElementById('message').textContent.includes('HTTP 415')")
    assert page.locator("#grid .card").count() == 0
