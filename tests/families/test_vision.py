"""Vision over HTTP against the real app: /api/image/classify (ResNet, ViT) and /api/image/describe
(BLIP, Qwen2-VL) from uploads and from URLs, batching across concurrent requests, vision jobs through
/api/v1/run, and the 4xx answers for bad images, bad URLs and bad options.

The models are tiny random-weight real architectures (tests/tiny_vision.py), so labels are arbitrary
and captions gibberish; the scores are checked against the same model run in this process. Images
served by URL come from a threading http.server on 127.0.0.1, which the test app allow-lists.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from tests.conftest import UPLOAD_LIMIT_BYTES
from tests.tiny_vision import LABELS, RESNET_REPO, VIT_REPO

CLASSIFIERS = {"resnet-50": RESNET_REPO, "vit-base-patch16-224": VIT_REPO}
ACCEPTED = "png, jpg, jpeg, webp"
IMAGE_MAX_BYTES = 20 * 1024 * 1024  # ServiceSettings.image_max_bytes' default


def picture(seed: int, size: tuple[int, int] = (64, 48), fmt: str = "PNG") -> bytes:
    """A seeded random RGB image, encoded with Pillow."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


@pytest.fixture(scope="module")
def image_server():
    """Base URL of a local http server with a few files (path -> (content type, bytes))."""
    files = {
        "/cat.png": ("image/png", picture(1, (80, 60))),
        "/photo.jpg": ("image/jpeg", picture(2, (120, 90), "JPEG")),
        "/notes.png": ("image/png", b"these are not pixels"),
        "/huge.png": ("image/png", b"\0" * (IMAGE_MAX_BYTES + 1)),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path not in files:
                self.send_error(404)
                return
            kind, body = files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the service stopped reading (413)
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()


def upload(client, route: str, name: str, data: bytes, **fields):
    return client.post(route, files={"file": (name, data)}, data={k: str(v) for k, v in fields.items()})


def in_process_scores(hub, repo_id: str, image: bytes) -> list[float]:
    """The softmax the model itself gives, run here from the folder the test hub serves."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    folder = hub.repos[repo_id].files["config.json"].source.parent
    processor = AutoImageProcessor.from_pretrained(folder, backend="pil")
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        inputs = processor(images=Image.open(io.BytesIO(image)).convert("RGB"), return_tensors="pt")
        return model(**inputs).logits.softmax(-1)[0].tolist()


@pytest.mark.parametrize("model", list(CLASSIFIERS))
def test_classify_upload_gives_top_k_labels_best_first(client, hub, model):
    image = picture(3, (64, 48))
    reply = upload(client, "/api/image/classify", "kitten.png", image, model=model, top_k=3)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == model and body["top_k"] == 3
    assert body["image"] == {"width": 64, "height": 48, "format": "PNG"}
    scores = [p["score"] for p in body["predictions"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    expected = in_process_scores(hub, CLASSIFIERS[model], image)
    best = sorted(range(len(LABELS)), key=lambda i: -expected[i])[:3]
    id2label = LABELS if model == "resnet-50" else LABELS[::-1]  # tiny_vision's ViT lists them reversed
    assert [p["label"] for p in body["predictions"]] == [id2label[i] for i in best]
    assert scores == pytest.approx([expected[i] for i in best], abs=1e-5)


def test_classify_defaults_and_top_k_bounded_by_labels(client):
    image = picture(4)
    default = upload(client, "/api/image/classify", "a.jpg", picture(4, fmt="JPEG"))
    assert default.status_code == 200, default.text
    assert default.json()["model"] == "resnet-50" and len(default.json()["predictions"]) == 5
    every = upload(client, "/api/image/classify", "a.png", image, model="vit", top_k=50)
    assert every.status_code == 200, every.text
    assert every.json()["top_k"] == len(LABELS) and {p["label"] for p in every.json()["predictions"]} == set(LABELS)
    assert sum(p["score"] for p in every.json()["predictions"]) == pytest.approx(1, abs=1e-5)


def test_classify_by_url_equals_upload(client, image_server):
    base, files = image_server
    by_url = client.post("/api/image/classify", json={"image_url": f"{base}/photo.jpg", "top_k": 4})
    by_upload = upload(client, "/api/image/classify", "photo.jpg", files["/photo.jpg"][1], top_k=4)
    assert by_url.status_code == by_upload.status_code == 200, by_url.text
    assert by_url.json()["image"] == {"width": 120, "height": 90, "format": "JPEG"}
    assert by_url.json()["predictions"] == by_upload.json()["predictions"]


def test_concurrent_classify_requests_share_a_forward_pass(client):
    images = [picture(10 + i, (40 + 8 * i, 50)) for i in range(6)]
    alone = [upload(client, "/api/image/classify", f"{i}.png", image, top_k=10) for i, image in enumerate(images)]
    assert all(r.status_code == 200 and r.headers["x-batch-size"] == "1" for r in alone)
    with ThreadPoolExecutor(len(images)) as pool:
        together = list(pool.map(lambda i: upload(client, "/api/image/classify", f"{i}.png", images[i], top_k=10),
                                 range(len(images))))
    assert all(r.status_code == 200 for r in together), [r.text for r in together]
    assert max(int(r.headers["x-batch-size"]) for r in together) > 1
    for single, batched in zip(alone, together):
        assert [p["label"] for p in batched.json()["predictions"]] == [p["label"] for p in single.json()["predictions"]]
        assert ([p["score"] for p in batched.json()["predictions"]]
                == pytest.approx([p["score"] for p in single.json()["predictions"]], abs=1e-5))


@pytest.mark.parametrize("model", ["blip-image-captioning-base", "qwen2-vl-2b-instruct"])
def test_describe_upload(client, model):
    reply = upload(client, "/api/image/describe", "scene.webp", picture(5, (100, 70), "WEBP"), model=model)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == model and body["description"].strip()
    assert body["image"] == {"width": 100, "height": 70, "format": "WEBP"}
    assert 0 < body["generated_tokens"] <= 12  # tiny_vision's default_max_tokens
    assert body["truncated"] == (body["generated_tokens"] == 12)  # cut by the limit, or ended by the model
    assert reply.headers["x-batch-size"] == "1"
    assert body["prompt"] == (None if model.startswith("blip") else "Describe this image.")


def test_describe_by_url_with_qwen_prompt_and_max_tokens(client, image_server):
    base, _ = image_server
    reply = client.post("/api/image/describe", json={"image_url": f"{base}/cat.png", "model": "qwen-describe-image",
                                                     "prompt": "What animal is this?", "max_tokens": 3})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "qwen2-vl-2b-instruct" and body["prompt"] == "What animal is this?"
    assert body["description"].strip() and body["generated_tokens"] <= 3
    assert body["truncated"] == (body["generated_tokens"] == 3)
    assert body["image"]["width"] == 80 and body["image"]["height"] == 60


def test_blip_caption_starts_with_the_prompt(client, image_server):
    base, _ = image_server
    plain = client.post("/api/image/describe", json={"image_url": f"{base}/cat.png", "model": "blip"})
    prompted = client.post("/api/image/describe", json={"image_url": f"{base}/cat.png", "model": "blip",
                                                        "prompt": "a photo of"})
    assert plain.status_code == prompted.status_code == 200, prompted.text
    caption = prompted.json()["description"]
    assert caption.startswith("a photo of") and len(caption) > len("a photo of")
    assert not plain.json()["description"].startswith("a photo of")


def test_concurrent_qwen_descriptions_batch_and_match_alone(client):
    prompts = ["Describe this image.", "What is in it?", "Name the colours."]
    images = [picture(20 + i, (56 + 14 * i, 56)) for i in range(3)]

    def describe(i):
        return upload(client, "/api/image/describe", f"{i}.png", images[i], model="qwen2-vl", prompt=prompts[i])

    alone = [describe(i) for i in range(3)]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(describe, range(3)))
    assert all(r.status_code == 200 for r in alone + together), [r.text for r in together]
    assert max(int(r.headers["x-batch-size"]) for r in together) > 1
    assert [r.json()["description"] for r in together] == [r.json()["description"] for r in alone]


def error(reply, status: int) -> str:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["success"] is False
    return body["message"]


def test_bad_uploads(client):
    route = "/api/image/classify"
    assert error(upload(client, route, "notes.png", b"just some text"), 400) == (
        "'notes.png' is not a readable image: its format is not one Pillow knows (PNG, JPEG, WebP, GIF, BMP, TIFF...)")
    assert error(upload(client, route, "notes.txt", b"just some text"), 415) == (
        f"File type 'txt' is not accepted by image-classifier; it takes {ACCEPTED}")
    truncated = picture(6)[:200]
    assert error(upload(client, "/api/image/describe", "cut.png", truncated), 400).startswith(
        "'cut.png' is not a readable image: ")
    assert error(upload(client, route, "big.png", b"\0" * (UPLOAD_LIMIT_BYTES + 1)), 413) == (
        f"Image 'big.png' exceeds the limit of {UPLOAD_LIMIT_BYTES} bytes")
    assert error(upload(client, route, "empty.png", b""), 400) == "'empty.png' is empty"
    # the job routes' upload checks the same way, before anything enters the job store
    staged = client.post("/upload/image-classifier", files={"file": ("notes.png", b"just some text")})
    assert error(staged, 400).startswith("'notes.png' is not a readable image")
    kept = client.post("/upload/image-classifier", files={"file": ("cat.png", picture(7, (40, 30)))})
    assert kept.status_code == 201 and (kept.json()["width"], kept.json()["height"]) == (40, 30), kept.text


def test_bad_requests(client, image_server):
    base, files = image_server
    no_image = "No image: upload one as multipart `file`, or give its `image_url`"
    assert error(client.post("/api/image/classify", json={"top_k": 2}), 400) == no_image
    assert error(client.post("/api/image/describe", data={"prompt": "hi"}), 400) == no_image
    both = client.post("/api/image/classify", files={"file": ("a.png", files["/cat.png"][1])},
                       data={"image_url": f"{base}/cat.png"})
    assert error(both, 400) == "Send either `file` or `image_url`, not both"
    assert error(client.post("/api/image/classify", json={"image_url": f"{base}/cat.png", "top_k": 0}), 400) == (
        "Invalid request: top_k: Input should be greater than or equal to 1")
    assert error(client.post("/api/image/describe", json={"image_url": f"{base}/cat.png", "max_tokens": 0}),
                 400) == "Invalid request: max_tokens: Input should be greater than or equal to 1"
    unknown = error(client.post("/api/image/classify", json={"image_url": f"{base}/cat.png", "model": "nope"}), 404)
    assert unknown == ("Model 'nope' not found for task 'image-classification'. "
                       "Known models: resnet-50, vit-base-patch16-224")
    wrong = client.post("/api/image/classify", json={"image_url": f"{base}/cat.png", "model": "blip"})
    assert error(wrong, 400).startswith("Model 'blip-image-captioning-base' is an image-to-text model")
    assert wrong.json()["error_code"] == "WRONG_MODEL_TASK"
    assert error(client.post("/api/image/classify", content=b"x", headers={"content-type": "text/plain"}), 415) == (
        "Send the image as multipart/form-data (`file`) or JSON with `image_url`; got content type 'text/plain'")


@pytest.mark.parametrize("url, address", [
    ("http://10.0.0.1/cat.png", "10.0.0.1"),
    ("http://192.168.1.1/cat.png", "192.168.1.1"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://[::1]/cat.png", "::1"),
])
def test_private_urls_are_refused(client, url, address):
    message = error(client.post("/api/image/describe", json={"image_url": url}), 400)
    assert message.startswith(f"URL host '{address.strip('[]')}' resolves to {address}, a private, loopback or "
                              "reserved address")


def test_bad_urls(client, image_server):
    base, _ = image_server

    def classify(url):
        return client.post("/api/image/classify", json={"image_url": url})

    assert error(classify("ftp://example.com/cat.png"), 400) == "Only http and https URLs are accepted; got 'ftp'"
    assert error(classify(f"{base}/missing.png"), 400) == (
        f"Fetching '{base}/missing.png' failed: the server answered HTTP 404")
    assert error(classify(f"{base}/notes.png"), 400).startswith(f"'{base}/notes.png' is not a readable image")
    assert error(classify(f"{base}/huge.png"), 413) == (
        f"'{base}/huge.png' is {IMAGE_MAX_BYTES + 1} bytes; the limit is {IMAGE_MAX_BYTES} bytes")


def test_classification_job_from_url(client, image_server):
    base, files = image_server
    reply = client.post("/api/v1/run?wait=60", json={"model": "vit", "input": {"image_url": f"{base}/cat.png",
                                                                              "top_k": 2}})
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["status"] == "completed" and job["task"] == "image-classification", job
    assert job["model"] == "vit-base-patch16-224" and job["input"]["image_url"] == f"{base}/cat.png"
    assert len(job["output"]["predictions"]) == 2 and job["output"]["image"]["width"] == 80
    direct = upload(client, "/api/image/classify", "cat.png", files["/cat.png"][1], model="vit", top_k=2)
    assert job["output"]["predictions"] == direct.json()["predictions"]


def test_description_job_from_upload(client):
    stored = client.post("/upload/image-captioner", files={"file": ("street.png", picture(7, (90, 60)))})
    assert stored.status_code == 201, stored.text
    file_id = stored.json()["file_id"]
    reply = client.post("/api/v1/run?wait=60", json={"task": "image-to-text",
                                                     "input": {"file_id": file_id, "prompt": "a picture of"}})
    assert reply.status_code == 200, reply.text
    job = reply.json()
    assert job["status"] == "completed" and job["model"] == "blip-image-captioning-base", job
    assert job["output"]["description"].startswith("a picture of")
    # seed 000's route runs the same job
    processed = client.post(f"/process/qwen2-vl/{file_id}?wait=60", json={"max_tokens": 4})
    assert processed.status_code == 200, processed.text
    assert processed.json()["output"]["description"] and processed.json()["output"]["generated_tokens"] <= 4


def test_bad_job_inputs(client):
    run = {"model": "resnet-50"}  # (a non-image upload is refused at /upload: test_bad_uploads)
    assert error(client.post("/api/v1/run", json={**run, "input": {"image_url": "http://10.0.0.1/a.png"}}),
                 400).startswith("URL host '10.0.0.1' resolves to 10.0.0.1, a private")
    assert error(client.post("/api/v1/run", json={**run, "input": {}}), 400) == (
        "No image: give the `file_id` of an upload, or give its `image_url`")
    assert error(client.post("/api/v1/run", json={**run, "input": {"file_id": "x", "image_url": "http://a/b"}}),
                 400) == "Send either `file_id` or `image_url`, not both"
    assert error(client.post("/api/v1/run", json={**run, "input": {"file_id": "nope", "prompt": "x"}}), 400) == (
        "Invalid request: prompt: Extra inputs are not permitted")
    assert error(client.post("/api/v1/run", json={**run, "input": {"file_id": "missing"}}), 404).startswith(
        "No upload with file_id 'missing'")
