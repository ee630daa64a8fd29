"""Images in, measured before they are decoded: Pillow reads the header for the size, and a picture with
more than MAX_PIXELS pixels (a decompression bomb) is refused before any pixel is read."""

from __future__ import annotations

import io

from pydantic import BaseModel, Field

from deployments.errors import InvalidRequest, PayloadTooLarge

MAX_PIXELS = 50_000_000  # larger images are refused before they are decoded (decompression bombs)


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str | None = Field(description="As Pillow read it: PNG, JPEG, WEBP...")


def check_image_header(data: bytes, name: str = "image") -> ImageInfo:
    """The image's size and format from its header alone (no pixel is decoded), or the 400/413 open_image
    gives: the ingress refuses a bomb before the bytes go anywhere."""
    image = open_image(data, name, decode=False)
    return ImageInfo(width=image.width, height=image.height, format=image.format)


def open_image(data: bytes, name: str = "image", decode: bool = True):
    """An RGB Pillow image, or a 400 (not an image) / 413 (too many pixels) naming `name`. The pixel count
    is read from the header (Image.open reads no pixels), so a bomb is refused before it is decoded.
    With decode=False, the opened image, its pixels not read."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidRequest(f"'{name}' is empty")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise PayloadTooLarge(f"'{name}' is {image.width}x{image.height} pixels; the limit is {MAX_PIXELS} pixels")
        if not decode:
            return image
        image.load()
    except Image.DecompressionBombError as bomb:  # Pillow's own check, at twice its MAX_IMAGE_PIXELS
        raise PayloadTooLarge(f"'{name}' has too many pixels; the limit is {MAX_PIXELS} pixels ({bomb})") from None
    except UnidentifiedImageError:
        raise InvalidRequest(f"'{name}' is not a readable image: its format is not one Pillow knows "
                             "(PNG, JPEG, WebP, GIF, BMP, TIFF...)") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated or corrupt data
        raise InvalidRequest(f"'{name}' is not a readable image: {error}") from None
    info = ImageInfo(width=image.width, height=image.height, format=image.format)
    return image.convert("RGB"), info
