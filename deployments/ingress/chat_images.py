"""Chat with images: a request whose messages hold `image_url` parts goes to a vision-language model (catalog
capability `vision-chat`, served by the vision family); a text-only chat model refuses it naming those that
take images. Images come as data: URLs or http(s) URLs fetched with the SSRF checks, and every one is
measured from its header before any replica decodes it."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from typing import Any

from deployments.errors import InvalidRequest, PayloadTooLarge
from deployments.families.chat.protocol import TASK, tool_models
from deployments.ingress.chat_requests import ChatFields, ImagePart, Message
from deployments.ingress.services import Services
from deployments.ingress.vision_routes import fetch_image
from deployments.media.images import check_image_header
from registry import ModelEntry
from registry.loader import UnknownModelError

VISION_CHAT = "vision-chat"
MAX_IMAGES = 4  # per request
DATA_URL = re.compile(r"data:image/[a-zA-Z0-9.+-]+;base64,(?P<data>.*)", re.S)


def chat_entry(services: Services, body: ChatFields, name: str | None) -> ModelEntry:
    """The model a chat request reaches: a vision-language model when it names one, else a chat model,
    which must not be sent images."""
    if name:
        try:
            named = services.catalog.resolve(name)
        except UnknownModelError:
            named = None
        if named is not None and takes_images(named):
            return services.model_for(services.catalog.task_of(named), name)
    entry = services.model_for(TASK, name)
    if body.images():
        takers = sorted(e.id for e in services.catalog.models.values() if takes_images(e))
        raise InvalidRequest(f"Model '{entry.id}' takes no images; chat models that do: {', '.join(takers)}")
    return entry


def takes_images(entry: ModelEntry) -> bool:
    return VISION_CHAT in entry.capabilities


async def vision_request(services: Services, entry: ModelEntry, body: ChatFields,
                         max_tokens: int | None) -> tuple[list[dict], list[bytes], dict[str, Any]]:
    """The arguments of vision-language model `entry`'s `chat` and `chat_stream`: the messages with image
    placeholders, the images (fetched and measured), the options."""
    if body.tools:
        raise InvalidRequest(f"Model '{entry.id}' takes no tools; chat models that do: "
                             f"{tool_models(services.catalog)}")
    urls = body.images()
    if len(urls) > MAX_IMAGES:
        raise InvalidRequest(f"{len(urls)} images in one request; at most {MAX_IMAGES}")
    images = [await _image(services, url, f"image {i + 1}") for i, url in enumerate(urls)]
    messages = [{"role": m.role, "content": _parts(m)} for m in body.messages]
    options = {k: v for k, v in body.options(max_tokens).items() if k in ("max_tokens", "temperature", "top_p",
                                                                          "seed", "stop", "response_format")}
    return messages, images, options


def _parts(message: Message) -> list[dict[str, Any]]:
    """A message's content as the processor's chat template takes it: text and image placeholders in order."""
    if not isinstance(message.content, list):
        return [{"type": "text", "text": message.content or ""}]
    return [{"type": "image"} if isinstance(part, ImagePart) else {"type": "text", "text": part.text}
            for part in message.content]


async def _image(services: Services, url: str, name: str) -> bytes:
    limit = services.settings.image_max_bytes
    found = DATA_URL.fullmatch(url)
    if found:
        encoded = found["data"]
        if len(encoded) * 3 // 4 > limit:
            raise PayloadTooLarge(f"{name} is about {len(encoded) * 3 // 4} bytes; the limit is {limit} bytes")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{name}: the data URL's base64 is not valid") from None
    elif url.startswith("data:"):
        raise InvalidRequest(f"{name}: a data URL must be data:image/<type>;base64,<data>")
    else:
        data = await fetch_image(services, url)
    await asyncio.to_thread(check_image_header, data, name)  # a bomb stops here, not in the replica
    return data
