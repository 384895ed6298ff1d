"""The web page in a real browser (Debian's chromium driven by playwright, no browser download): type a prompt,
generate, watch the progress bar and preview move, get the image in the gallery; img2img with a painted mask."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.server.conftest import decode_png

CHROMIUM = os.environ.get("UNSTATIC_CHROMIUM", "/usr/bin/chromium")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium")
    os.environ.setdefault("XDG_CONFIG_HOME", str(profile / "config"))
    os.environ.setdefault("XDG_CACHE_HOME", str(profile / "cache"))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(live_server)
    page.wait_for_function("document.querySelector('#sampler').options.length > 0")
    yield page
    page.close()
    assert not errors, errors  # no uncaught JavaScript errors


def test_generate_shows_progress_preview_and_the_result(page, tmp_path):
    page.fill("#prompt", "star")
    page.fill("#steps", "200")  # long enough for several polls of the job at 120 ms
    page.click("#generate")
    card = page.wait_for_selector(".card img.result", timeout=30_000)
    assert int(page.get_attribute("#progress", "data-updates")) >= 1  # the bar showed values between 0 and 1
    assert page.eval_on_selector("#progress", "bar => bar.value") == 1
    assert page.get_attribute("#preview", "src").startswith("data:image/png;base64,")
    source = card.get_attribute("src")
    assert decode_png(source.split(",", 1)[1]).size == (8, 8)
    assert "Steps: 200" in page.inner_text(".card pre") and page.inner_text("#status") == "done"
    page.screenshot(path=str(tmp_path / "generate.png"), full_page=True)
    assert (tmp_path / "generate.png").stat().st_size > 0

    seed = int(page.inner_text(".card button").split()[-1])
    page.click(".card button")  # reuse the seed
    assert not page.is_checked("#random-seed") and int(page.input_value("#seed")) == seed


def test_img2img_with_a_painted_mask(page, tmp_path):
    rng = np.random.default_rng(2)
    init = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB")
    buffer = io.BytesIO()
    init.save(buffer, format="PNG")
    page.click("#img2img summary")
    page.set_input_files("#init-file", files=[{"name": "init.png", "mimeType": "image/png", "buffer": buffer.getvalue()}])
    page.wait_for_selector("#canvas-box:not([hidden])")
    page.fill("#prompt", "circle")
    page.fill("#steps", "3")
    page.fill("#mask-blur", "0")
    page.fill("#strength", "1")
    page.dispatch_event("#strength", "input")
    box = page.locator("#mask-canvas").bounding_box()  # 8x8 pixels shown 256 px wide: paint the left quarter
    page.mouse.move(box["x"] + 10, box["y"] + 10)
    page.mouse.down()
    for y in range(10, int(box["height"]) - 5, 20):
        page.mouse.move(box["x"] + 30, box["y"] + y)
    page.mouse.up()
    page.click("#generate")
    card = page.wait_for_selector(".card img.result", timeout=30_000)
    out = np.asarray(decode_png(card.get_attribute("src").split(",", 1)[1]).convert("RGB"))
    text = page.inner_text(".card pre")
    assert "Denoising strength: 1" in text and "Mask blur: 0" in text  # it went to inpainting
    assert np.array_equal(out[:, 4:], np.asarray(init)[:, 4:])  # the unpainted right half is kept
    assert np.abs(out[:, :1].astype(int) - np.asarray(init)[:, :1]).mean() > 20  # the painted left edge is not
    page.screenshot(path=str(tmp_path / "inpaint.png"), full_page=True)
