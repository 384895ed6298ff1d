"""The unmodified PyPI client ``webuiapi`` (what A1111 scripts and bots use) against a live uvicorn server on
loopback: every call it makes must work as it does against AUTOMATIC1111."""

from __future__ import annotations

import threading
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from tests.server.conftest import wait_for

webuiapi = pytest.importorskip("webuiapi")


@pytest.fixture(scope="module")
def api(live_server):
    url = urlparse(live_server)
    return webuiapi.WebUIApi(host=url.hostname, port=url.port, sampler="Euler a", steps=2)


def test_txt2img(api):
    result = api.txt2img(prompt="star", seed=11, width=16, height=8, batch_size=2, cfg_scale=3)
    assert [image.size for image in result.images] == [(16, 8)] * 2
    assert result.info["all_seeds"] == [11, 12] and result.info["sampler_name"] == "Euler a"
    assert result.parameters["prompt"] == "star" and result.image.text["parameters"].startswith("star\n")


def test_img2img_with_a_mask(api):
    rng = np.random.default_rng(1)
    init = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB")
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 8, 4))  # repaint the top half
    result = api.img2img(images=[init], mask_image=mask, prompt="circle", denoising_strength=1.0, mask_blur=0,
                         width=8, height=8, seed=3, inpaint_full_res=False)
    out = np.asarray(result.image.convert("RGB"))
    assert np.array_equal(out[4:], np.asarray(init)[4:])  # the black half kept, pixel for pixel
    assert not np.array_equal(out[:4], np.asarray(init)[:4])
    assert result.info["denoising_strength"] == 1.0


def test_samplers_models_and_switching_through_options(api):
    assert "Euler a" in api.util_get_sampler_names() and "karras" in api.util_get_scheduler_names()
    assert api.util_get_model_names() == ["blank", "tiny"]
    assert api.util_get_current_model() == "tiny"
    api.util_set_model("blank", find_closest=False)
    try:
        assert api.util_get_current_model() == "blank"
        assert api.txt2img(prompt="", width=8, height=8).info["sd_model_name"] == "blank"
    finally:
        api.util_set_model("tiny", find_closest=False)
    assert api.util_get_current_model() == "tiny"


def test_png_info(api):
    image = api.txt2img(prompt="square", seed=4, width=8, height=8).image
    assert api.png_info(image).info.startswith("square\n") and "Seed: 4" in api.png_info(image).info


def test_progress_while_a_job_runs_then_interrupt(api, live_server):
    assert api.get_progress()["state"]["job_count"] == 0
    done = {}
    thread = threading.Thread(target=lambda: done.update(result=api.txt2img(prompt="circle", steps=1000, width=8, height=8)))
    thread.start()
    try:
        progress = wait_for(lambda: (p := api.get_progress())["state"]["sampling_step"] > 0 and p, timeout=20)
        assert 0 < progress["progress"] < 1 and progress["eta_relative"] > 0 and progress["state"]["job_count"] == 1
        assert progress["current_image"]  # the denoising preview, raw base64
    finally:
        assert api.interrupt() == {}
        thread.join(30)
    assert done["result"].image.size == (8, 8) and done["result"].info["interrupted"]
    job = api.session.get(f"{live_server}/v1/jobs/{progress['current_task']}").json()  # the same job, by id
    assert job["state"] == "done" and job["step"] < 1000  # it stopped early
    wait_for(lambda: api.get_progress()["progress"] == 0)


def test_errors_raise_in_the_client_and_the_server_goes_on(api):
    with pytest.raises(RuntimeError, match="422"):
        api.txt2img(prompt="circle", steps=10**6, width=8, height=8)
    with pytest.raises(RuntimeError, match="unknown sampler"):
        api.txt2img(prompt="circle", sampler_name="warp drive", width=8, height=8)
    assert api.txt2img(prompt="circle", width=8, height=8).image.size == (8, 8)
