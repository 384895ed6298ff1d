"""The /sdapi/v1 endpoints through FastAPI's TestClient: shapes A1111 clients rely on, the model switch,
png-info round trips, img2img and inpainting, and bad input answered with a 4xx JSON message while the server
keeps serving."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image

from tests.server.conftest import decode_png, png_base64, wait_for

GOOD = {"prompt": "circle", "steps": 2, "seed": 5, "width": 8, "height": 8}


def _info(response) -> dict:
    assert response.status_code == 200, response.text
    return json.loads(response.json()["info"])


def test_txt2img_returns_raw_base64_pngs_with_their_parameters(client):
    response = client.post("/sdapi/v1/txt2img", json={**GOOD, "batch_size": 2, "n_iter": 2, "sampler_name": "Euler a"})
    info = _info(response)
    images = [decode_png(data) for data in response.json()["images"]]
    assert [image.size for image in images] == [(8, 8)] * 4
    assert info["all_seeds"] == [5, 6, 7, 8] and info["sampler_name"] == "Euler a"
    assert info["scheduler"] == "normal"  # "automatic": A1111's default for Euler a
    assert images[0].text["parameters"] == info["infotexts"][0] and "Seed: 5" in info["infotexts"][0]
    assert response.json()["parameters"]["prompt"] == "circle"  # the request echoed


def test_same_seed_same_image_and_the_seed_of_a_batch_image_remakes_it(client):
    batch = client.post("/sdapi/v1/txt2img", json={**GOOD, "batch_size": 3}).json()["images"]
    alone = client.post("/sdapi/v1/txt2img", json={**GOOD, "seed": 7}).json()["images"][0]
    pixels = [np.asarray(decode_png(data), dtype=np.int16) for data in (*batch, alone)]
    assert np.abs(pixels[2] - pixels[3]).max() <= 1 and np.abs(pixels[0] - pixels[1]).max() > 10


def test_random_seed_is_drawn_and_reported(client):
    seeds = {_info(client.post("/sdapi/v1/txt2img", json={**GOOD, "seed": -1}))["seed"] for _ in range(3)}
    assert len(seeds) == 3 and all(0 <= seed < 2**32 for seed in seeds)


def test_lists_samplers_schedulers_models_scripts(client):
    samplers = client.get("/sdapi/v1/samplers").json()
    assert {"Euler a", "DPM++ 2M", "UniPC"} <= {s["name"] for s in samplers}
    assert all({"name", "aliases", "options"} <= set(s) for s in samplers)
    assert {"automatic", "karras", "exponential"} <= {s["name"] for s in client.get("/sdapi/v1/schedulers").json()}
    assert [m["title"] for m in client.get("/sdapi/v1/sd-models").json()] == ["tiny", "blank"]
    assert client.get("/sdapi/v1/scripts").json() == {"txt2img": [], "img2img": []}


def test_options_switch_the_model_and_requests_follow(client):
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "tiny"
    try:
        assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "blank", "CLIP_stop_at_last_layers": 2}).json() == {}
        options = client.get("/sdapi/v1/options").json()
        assert options["sd_model_checkpoint"] == "blank" and options["CLIP_stop_at_last_layers"] == 2
        info = _info(client.post("/sdapi/v1/txt2img", json={**GOOD, "prompt": ""}))  # unconditional: no prompt
        assert info["sd_model_name"] == "blank" and "Model: blank" in info["infotexts"][0]
        # a per-request model, without switching
        info = _info(client.post("/sdapi/v1/txt2img", json={**GOOD, "override_settings": {"sd_model_checkpoint": "tiny"}}))
        assert info["sd_model_name"] == "tiny" and client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == "blank"
    finally:
        client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny"})


def test_png_info_reads_back_what_txt2img_wrote(client):
    image = client.post("/sdapi/v1/txt2img", json={**GOOD, "negative_prompt": "star", "cfg_scale": 3}).json()["images"][0]
    info = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + image}).json()
    assert info["parameters"]["Prompt"] == "circle" and info["parameters"]["Negative prompt"] == "star"
    assert info["parameters"]["Seed"] == "5" and info["parameters"]["CFG scale"] == "3"
    plain = client.post("/sdapi/v1/png-info", json={"image": png_base64(Image.new("RGB", (4, 4)))}).json()
    assert plain["info"] == "" and plain["parameters"] == {}


def _init_image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB")


def test_img2img_strength_zero_returns_the_input(client):
    init = _init_image()
    response = client.post("/sdapi/v1/img2img", json={**GOOD, "init_images": [png_base64(init)], "denoising_strength": 0})
    assert np.array_equal(np.asarray(decode_png(response.json()["images"][0]).convert("RGB")), np.asarray(init))
    assert _info(response)["denoising_strength"] == 0 and response.json()["parameters"]["init_images"] is None


def test_inpainting_repaints_the_white_part_of_the_mask_and_keeps_the_rest(client):
    init = _init_image()
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:, :4] = 255  # repaint the left half
    body = {**GOOD, "init_images": ["data:image/png;base64," + png_base64(init)], "denoising_strength": 1.0,
            "mask": "data:image/png;base64," + png_base64(Image.fromarray(mask, "L")), "mask_blur": 0}
    out = np.asarray(decode_png(client.post("/sdapi/v1/img2img", json=body).json()["images"][0]).convert("RGB"))
    original = np.asarray(init)
    assert np.array_equal(out[:, 4:], original[:, 4:])
    assert np.abs(out[:, :4].astype(int) - original[:, :4]).mean() > 20
    inverted = np.asarray(decode_png(client.post("/sdapi/v1/img2img", json={**body, "inpainting_mask_invert": 1})
                                     .json()["images"][0]).convert("RGB"))
    assert np.array_equal(inverted[:, :4], original[:, :4])


def test_progress_is_idle_between_jobs(client):
    progress = client.get("/sdapi/v1/progress").json()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0 and progress["current_image"] is None
    assert client.post("/sdapi/v1/interrupt").json() == {} and client.post("/sdapi/v1/skip").json() == {}


def test_progress_preview_skip_and_interrupt_while_txt2img_waits(client):
    """A 1000-step, 2-iteration request (tens of seconds if left alone) in one thread; progress, skip and
    interrupt from another, as A1111 front ends do."""
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(r=client.post(
        "/sdapi/v1/txt2img", json={**GOOD, "steps": 1000, "n_iter": 2})))
    thread.start()
    try:
        running = wait_for(lambda: (p := client.get("/sdapi/v1/progress").json())["state"]["sampling_step"] > 0 and p)
        assert 0 < running["progress"] < 0.5 and running["state"]["job_count"] == 1
        assert running["state"]["sampling_steps"] == 1000 and decode_png(running["current_image"]).size == (8, 8)
        client.post("/sdapi/v1/skip")  # ends the first iteration; the second starts
        wait_for(lambda: client.get("/sdapi/v1/progress").json()["state"]["job_no"] == 1)
    finally:
        client.post("/sdapi/v1/interrupt")
        thread.join(30)
    info = _info(answer["r"])
    assert info["interrupted"] and info["all_seeds"] == [5, 6]  # what was made is returned, as A1111 does


BAD = [
    ("malformed JSON", b'{"prompt": "circle", ', 400, "not valid JSON"),
    ("not an object", b'[1, 2]', 422, "valid dictionary"),
    ("width 0", {**GOOD, "width": 0}, 422, "width"),
    ("width 100000", {**GOOD, "width": 100000}, 422, "width"),
    ("width not a multiple", {**GOOD, "width": 9}, 422, "multiple of 2"),
    ("steps -1", {**GOOD, "steps": -1}, 422, "steps"),
    ("steps 10**6", {**GOOD, "steps": 10**6}, 422, "steps"),
    ("steps text", {**GOOD, "steps": "many"}, 422, "steps"),
    ("cfg infinite", b'{"prompt": "circle", "cfg_scale": 1e999}', 422, "cfg_scale"),
    ("unknown sampler", {**GOOD, "sampler_name": "warp drive"}, 422, "unknown sampler 'warp drive'"),
    ("unknown scheduler", {**GOOD, "scheduler": "lunar"}, 422, "unknown scheduler"),
    ("unknown model", {**GOOD, "override_settings": {"sd_model_checkpoint": "nope"}}, 404, "unknown model 'nope'"),
    ("not one of the classes", {**GOOD, "prompt": "hexagon"}, 422, "unknown class 'hexagon'"),
    ("seed too large", {**GOOD, "seed": 2**40}, 422, "seed"),
    ("seeds run past the largest", {**GOOD, "seed": 2**32 - 2, "batch_size": 3}, 422, "largest seed"),
]
BAD_IMG2IMG = [
    ("no init image", {**GOOD}, 422, "init_images"),
    ("bad base64", {**GOOD, "init_images": ["@@@not base64@@@"]}, 400, "not valid base64"),
    ("not an image", {**GOOD, "init_images": ["aGVsbG8gd29ybGQ="]}, 400, "not an image"),
    ("empty image", {**GOOD, "init_images": [""]}, 400, "empty"),
    ("strength 2", {**GOOD, "init_images": [png_base64(Image.new("RGB", (8, 8)))], "denoising_strength": 2}, 422,
     "denoising_strength"),
    ("mask of the wrong size", {**GOOD, "init_images": [png_base64(Image.new("RGB", (8, 8)))],
                                "mask": png_base64(Image.new("L", (16, 8), 255))}, 422, "does not match"),
]


@pytest.mark.parametrize("endpoint, body, status, message",
                         [("txt2img", *case[1:]) for case in BAD] + [("img2img", *case[1:]) for case in BAD_IMG2IMG],
                         ids=[f"txt2img: {c[0]}" for c in BAD] + [f"img2img: {c[0]}" for c in BAD_IMG2IMG])
def test_bad_input_is_a_4xx_with_a_message_and_the_server_keeps_serving(client, endpoint, body, status, message):
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    response = client.post(f"/sdapi/v1/{endpoint}", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"error", "detail"} and message in error["detail"]
    assert client.post("/sdapi/v1/txt2img", json=GOOD).status_code == 200


def test_other_bad_requests(client):
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"}).status_code == 404
    assert client.post("/sdapi/v1/png-info", json={"image": "%%%"}).json()["error"] == "bad base64"
    missing = client.get("/sdapi/v1/nothing-here")
    assert missing.status_code == 404 and "no such endpoint" in missing.json()["detail"]
    assert client.get("/sdapi/v1/txt2img").status_code == 405
