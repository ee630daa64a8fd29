"""Request body caps per route, from settings: a JSON body is small, an audio route takes OpenAI's 25 MB, an
image route the image cap, and only /upload the large upload cap. One table says which route carries what.

A body over its route's cap is refused with 413 in the service's JSON shape, whether it declares its
Content-Length or arrives chunked (counted as it arrives, stopped at the cap), before a route reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.ingress.http_errors import error_response
from deployments.settings import ServiceSettings

MULTIPART_OVERHEAD = 1 << 20  # room for a multipart body's framing and text fields around its files

# Path (exact, or a prefix of /-separated segments) -> what its body carries; the first match wins and
# every other route's body is plain JSON (max_json_bytes).
ROUTE_BODIES: tuple[tuple[str, str], ...] = (
    ("/upload", "upload"),  # POST /upload and /upload/{model}: the one route for large files
    ("/api/stt", "audio"),
    ("/v1/audio/transcriptions", "audio"),
    ("/v1/audio/translations", "audio"),
    ("/api/tts", "json+audio"),  # a voice sample inline: base64 audio_prompt
    ("/v1/audio/speech", "json+audio"),
    ("/voices", "json+audio"),
    ("/api/v1/run", "json+audio"),  # a text-to-speech job may carry its voice sample inline
    ("/run", "json+audio"),
    ("/runsync", "json+audio"),
    ("/api/image/classify", "image"),
    ("/api/image/describe", "image"),
    ("/api/video/image-to-video", "image"),
    ("/api/edit-image", "image+mask"),
    ("/v1/images/edits", "image+mask"),
)


@dataclass(frozen=True)
class BodyCap:
    limit: int  # bytes the body may have
    named: int  # the number a refusal names: the file cap for multipart routes, else the body cap
    what: str
    setting: str


def audio_bytes(settings: ServiceSettings) -> int:
    """Largest audio file a route other than /upload takes (never above the upload cap)."""
    return min(settings.audio_max_bytes, settings.max_upload_bytes)


def image_bytes(settings: ServiceSettings) -> int:
    return min(settings.image_max_bytes, settings.max_upload_bytes)


def body_caps(settings: ServiceSettings) -> dict[str, BodyCap]:
    """Each kind of body's cap, as the settings make it."""
    audio, image, json_cap = audio_bytes(settings), image_bytes(settings), settings.max_json_bytes
    with_audio = json_cap + math.ceil(audio * 4 / 3)
    return {
        "upload": BodyCap(settings.max_upload_bytes + MULTIPART_OVERHEAD, settings.max_upload_bytes, "upload",
                          "INFERENCE_MAX_UPLOAD_BYTES"),
        "audio": BodyCap(audio + MULTIPART_OVERHEAD, audio, "audio upload", "INFERENCE_AUDIO_MAX_BYTES"),
        "json+audio": BodyCap(with_audio, with_audio, "JSON body (with a base64 voice sample)",
                              "INFERENCE_MAX_JSON_BYTES + INFERENCE_AUDIO_MAX_BYTES x 4/3"),
        "image": BodyCap(image + MULTIPART_OVERHEAD, image, "image upload", "INFERENCE_IMAGE_MAX_BYTES"),
        "image+mask": BodyCap(2 * image + MULTIPART_OVERHEAD, 2 * image, "image and mask upload",
                              "2 x INFERENCE_IMAGE_MAX_BYTES"),
        "json": BodyCap(json_cap, json_cap, "JSON body", "INFERENCE_MAX_JSON_BYTES"),
    }


def body_kind(path: str) -> str:
    if path.startswith("/v2/") and path.count("/") >= 3:  # seed 004's RunPod shape: /v2/{model}/run, ...
        path = "/" + path.split("/", 3)[3]
    for prefix, kind in ROUTE_BODIES:
        if path == prefix or path.startswith(prefix + "/"):
            return kind
    return "json"


class _BodyTooLarge(HTTPException):
    """Raised into the route that reads past the cap; FastAPI passes HTTPExceptions through unchanged."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


class BodyCaps:
    """Refuses a body over its route's cap: by Content-Length before the route runs, or by counting."""

    def __init__(self, app: ASGIApp, settings: ServiceSettings):
        self.app = app
        self.caps = body_caps(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        cap = self.caps[body_kind(path[len(root):] if root and path.startswith(root) else path)]
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > cap.limit:
            await _refuse(scope, receive, send, cap, f"Request body of {length} bytes")
            return
        received, over, answered = 0, False, False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap.limit:
                    over = True
                    raise _BodyTooLarge
            return message

        async def answer(message: Message) -> None:
            nonlocal answered
            if not over:
                await send(message)
            elif not answered and message["type"] == "http.response.start":  # the route's own answer to it
                answered = True
                await _refuse(scope, receive, send, cap, "Request body")

        try:
            await self.app(scope, counted, answer)
        except _BodyTooLarge:
            if not answered:
                await _refuse(scope, receive, send, cap, "Request body")


async def _refuse(scope: Scope, receive: Receive, send: Send, cap: BodyCap, body: str) -> None:
    message = (f"{body} exceeds the {cap.what} limit of {cap.named} bytes for {scope['method']} {scope['path']} "
               f"({cap.setting})")
    await error_response(Request(scope), 413, message, "Upload too large", "PAYLOAD_TOO_LARGE")(scope, receive, send)
