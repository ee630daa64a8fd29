"""Image generation through the real app: seed 003's /api/image and /api/edit-image, OpenAI's image routes
with the official client, the catalog's limits, and seeds that give the same pixels batched or alone.
Tiny random-weight diffusers pipelines (tests/tiny_diffusion.py), fetched from the test hub."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_api_image_answers_seed_003s_shape_at_the_requested_size(client):
    reply = client.post("/api/image", json={"prompt": "A serene landscape with mountains and a lake",
                                            "height": 64, "width": 48, "num_inference_steps": 2, "seed": 7})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "sd-turbo" and body["generation_time"] > 0
    image = decode(body["image"])
    assert image.size == (48, 64) and body["size"] == len(base64.b64decode(body["image"]))
    assert body["seed"] == 7 and body["width"] == 48 and body["height"] == 64
    assert pixels(image).std() > 1  # not a blank image
    again = client.post("/api/image", json={"prompt": "A serene landscape with mountains and a lake",
                                            "height": 64, "width": 48, "num_inference_steps": 2, "seed": 7}).json()
    other = client.post("/api/image", json={"prompt": "A serene landscape with mountains and a lake",
                                            "height": 64, "width": 48, "num_inference_steps": 2, "seed": 8}).json()
    assert again["image"] == body["image"]  # same seed, same pixels
    assert np.abs(pixels(decode(other["image"])) - pixels(image)).mean() > 1


def test_concurrent_requests_share_a_pipeline_call_and_keep_their_seeds(client):
    request = {"prompt": "a red bicycle", "height": 64, "width": 64, "num_inference_steps": 2}
    alone = client.post("/api/image", json={**request, "seed": 21, "num_images": 2}).json()
    assert alone["seeds"] == [21, 22] and len(alone["images"]) == 2
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda seed: client.post("/api/image", json={**request, "seed": seed}),
                                [21, 22, 40]))
    bodies = [r.json() for r in replies]
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    assert max(b["batch_size"] for b in bodies) >= 2  # max_batch_size 4, 0.5 s window in the test app
    for body, expected in zip(bodies[:2], alone["images"]):  # image i of seed s == the lone request of seed s+i
        assert np.abs(pixels(decode(body["image"])) - pixels(decode(expected))).max() <= 1


def test_the_seeds_default_model_name_serves_sd3(client):
    reply = client.post("/api/image", json={"prompt": "A cat", "model": "stabilityai/stable-diffusion-3-medium",
                                            "height": 64, "width": 64, "num_inference_steps": 2,
                                            "guidance_scale": 7.5})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == "stable-diffusion-3-medium"
    assert decode(reply.json()["image"]).size == (64, 64)
    wrong = client.post("/api/image", json={"prompt": "A cat", "model": "sd3", "height": 72, "width": 64})
    assert wrong.status_code == 400
    assert "Height 72 px is not a multiple of 16" in wrong.json()["message"]


@pytest.mark.parametrize(("change", "message"), [
    ({"width": 1032}, "Width 1032 px exceeds model limit of 1024 px"),
    ({"width": 60}, "Width 60 px is not a multiple of 8, which model 'sd-turbo' requires; try 56 or 64"),
    ({"num_inference_steps": 80}, "num_inference_steps 80 exceeds model limit of 50"),
    ({"guidance_scale": 25}, "guidance_scale 25 exceeds model limit of 20"),
    ({"num_images": 5}, "num_images 5 exceeds model limit of 4"),
])
def test_limits_from_the_catalog_are_400s_naming_the_limit(client, change, message):
    reply = client.post("/api/image", json={"prompt": "a boat", "height": 64, "width": 64, **change})
    assert reply.status_code == 400 and message in reply.json()["message"], reply.text


def test_bad_image_requests_are_4xx(client):
    unknown = client.post("/api/image", json={"prompt": "a boat", "model": "dall-e-9"})
    assert unknown.status_code == 404 and "dall-e-9" in unknown.json()["message"]
    assert "sd-turbo" in unknown.json()["message"]
    assert client.post("/api/image", json={"prompt": "   "}).status_code in (400, 422)
    assert client.post("/api/image", json={"prompt": "x", "model": "whisper-base"}).status_code == 400


def edit(client, image: bytes, mask: bytes, **fields):
    return client.post("/api/edit-image", files={"image": ("original.png", image, "image/png"),
                                                 "mask": ("mask.png", mask, "image/png")},
                       data={"prompt": "A red car", "num_inference_steps": "3", "seed": "3", **fields})


def test_edit_image_repaints_only_the_masked_region(client):
    original = noise_image(64, 48)
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (0, 0, 32, 48))  # left half white: repaint
    reply = edit(client, png(original), png(mask), model="runwayml/stable-diffusion-inpainting")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "stable-diffusion-inpainting"
    result = decode(body["image"])
    assert result.size == (64, 48)  # the image's own size
    change = np.abs(pixels(result) - pixels(original))
    assert change[:, :32].mean() > 10 and change[:, 32:].max() == 0


def test_edit_image_refuses_mismatched_bad_and_wrong_type_uploads(client):
    image = png(noise_image(64, 64))
    mismatched = edit(client, image, png(Image.new("L", (32, 64), 255)))
    assert mismatched.status_code == 400
    assert mismatched.json()["message"] == "The mask is 32x64 px but the image is 64x64 px; they must be the same size"
    broken = edit(client, b"not an image at all", image)
    assert broken.status_code == 400 and "'image' is not a readable image" in broken.json()["message"]
    text = client.post("/api/edit-image", files={"image": ("notes.txt", b"hello", "text/plain"),
                                                 "mask": ("mask.png", image, "image/png")}, data={"prompt": "x"})
    assert text.status_code == 415 and "png, jpg, jpeg, webp" in text.json()["message"]
    missing = client.post("/api/edit-image", files={"image": ("a.png", image, "image/png")}, data={"prompt": "x"})
    assert missing.status_code == 400 and "mask" in missing.json()["message"]


def test_the_official_openai_client_generates_and_edits_images(service):
    import httpx
    import openai

    ai = openai.OpenAI(base_url=f"{service}/v1", api_key="unused")
    result = ai.images.generate(model="sd-turbo", prompt="a lighthouse at dusk", size="64x64", n=2,
                                response_format="b64_json")
    assert len(result.data) == 2
    assert all(decode(item.b64_json).size == (64, 64) for item in result.data)
    linked = ai.images.generate(prompt="a lighthouse at dusk", size="48x32", response_format="url")
    fetched = httpx.get(linked.data[0].url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (48, 32)
    # OpenAI's mask rule: the image's transparent pixels are what gets edited
    original = noise_image(64, 64).convert("RGBA")
    original.paste((0, 0, 0, 0), (32, 0, 64, 64))
    edited = ai.images.edit(image=("photo.png", png(original), "image/png"), prompt="a blue sky",
                            response_format="b64_json")
    out = pixels(decode(edited.data[0].b64_json))
    assert out.shape == (64, 64, 3)
    assert np.abs(out[:, :32] - pixels(original)[:, :32]).max() == 0  # opaque half kept


def test_openai_image_replies_match_openais_published_schema(client):
    """The raw JSON of /v1/images/generations and /v1/images/edits, b64_json and url, validated against
    OpenAI's ImagesResponse (tests/openai_image_schemas.json, from the openai/openai-openapi repository):
    no null where the schema allows none, and `size` only when it is one of the schema's sizes."""
    import json
    from pathlib import Path

    import jsonschema

    schemas = json.loads((Path(__file__).parent / "openai_image_schemas.json").read_text())
    images_response = {**schemas["$defs"]["ImagesResponse"], "$defs": schemas["$defs"]}
    original = noise_image(64, 64).convert("RGBA")
    original.paste((0, 0, 0, 0), (32, 0, 64, 64))  # the transparent half is edited
    replies = []
    for response_format in ("b64_json", "url"):
        replies.append(client.post("/v1/images/generations", json={
            "model": "sd-turbo", "prompt": "a lighthouse at dusk", "size": "64x48", "n": 2,
            "num_inference_steps": 2, "response_format": response_format}))
        replies.append(client.post("/v1/images/edits", files={"image": ("photo.png", png(original), "image/png")},
                                   data={"prompt": "a blue sky", "num_inference_steps": "2",
                                         "response_format": response_format}))
    for reply in replies:
        assert reply.status_code == 200, reply.text
        body = reply.json()
        jsonschema.validate(body, images_response)
        assert body["data"] and all(None not in image.values() for image in body["data"]), body
        assert "size" not in body and body["output_format"] == "png"  # 64x48 / 64x64: none of the schema's sizes


def test_openapi_lists_the_image_and_video_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/api/image", "/api/edit-image", "/api/video/text-to-video", "/api/video/image-to-video",
                  "/v1/images/generations", "/v1/images/edits"):
        assert "post" in paths[route], route
