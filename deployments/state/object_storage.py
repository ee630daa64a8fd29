"""S3-compatible object storage (AWS, MinIO, SeaweedFS...) through boto3: the client the settings
describe, and a prefix copied into a local folder one whole file at a time.

A file is written through `whole_file` (a hidden `*.incomplete` file renamed only when whole), so a
crash or a cancel leaves no partial file under a real name. A file already there with the object's
size is not fetched again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deployments.settings import ServiceSettings
from deployments.state.safe_paths import inside
from deployments.state.whole_files import whole_file


class Stopped(Exception):
    """A copy ended early because its stop event was set (a cancelled download)."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> ("bucket", "some/prefix"); ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
    return parts.netloc, parts.path.strip("/")


@cache
def _client(endpoint: str | None, key_id: str | None, secret: str | None, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                        region_name=region,
                        config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}))


def s3_client(settings: ServiceSettings) -> Any:
    """One boto3 client per process and endpoint (boto3 clients are thread-safe)."""
    return _client(settings.s3_endpoint_url, settings.s3_access_key_id, settings.s3_secret_access_key,
                   settings.s3_region)


def list_objects(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    """Key (relative to `prefix`) -> size of every object under it."""
    base = f"{prefix}/" if prefix else ""
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for item in page.get("Contents", []):
            relative = item["Key"][len(base):]
            if relative and not relative.endswith("/"):
                found[relative] = item["Size"]
    return found


def copy_prefix(client: Any, bucket: str, prefix: str, target: Path, stop: threading.Event | None = None,
                on_bytes: Callable[[int], None] | None = None) -> dict[str, int]:
    """Every object under `prefix` into `target` (same relative paths); the objects and their sizes."""
    objects = list_objects(client, bucket, prefix)
    if not objects:
        raise FileNotFoundError(f"s3://{bucket}/{prefix} holds no files")
    for relative, size in sorted(objects.items()):
        path = inside(target, *filter(None, relative.split("/")))  # a key holding '../' would leave the model's folder
        if path.is_file() and path.stat().st_size == size:
            if on_bytes:
                on_bytes(size)
            continue
        key = f"{prefix}/{relative}" if prefix else relative
        fetch_object(client, bucket, key, path, stop, on_bytes)
    return objects


def fetch_object(client: Any, bucket: str, key: str, path: Path, stop: threading.Event | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> None:
    """One object to `path`, through a hidden temp file renamed when whole."""
    with whole_file(path) as out:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(1 << 20):
            if stop is not None and stop.is_set():
                raise Stopped("the download was cancelled")
            out.write(chunk)
            if on_bytes:
                on_bytes(len(chunk))


# --- s3:// models: a prefix in the model cache, beside the hub's models--* folders ---------------
MODEL_FOLDER = "s3-models"


def model_folder(cache_dir: Path, url: str) -> Path:
    bucket, prefix = parse_s3_url(url)
    return inside(Path(cache_dir) / MODEL_FOLDER, bucket, *filter(None, prefix.split("/")))


def model_size(settings: ServiceSettings, url: str) -> int:
    return sum(list_objects(s3_client(settings), *parse_s3_url(url)).values())


def snapshot_model(settings: ServiceSettings, url: str, stop: threading.Event | None = None) -> str:
    """Every file under the s3:// prefix into the cache (files already whole are kept); the folder."""
    target = model_folder(settings.cache_dir, url)
    copy_prefix(s3_client(settings), *parse_s3_url(url), target, stop)
    return str(target)


def bytes_on_disk(cache_dir: Path, url: str) -> int:
    """What a running s3:// download has written so far, temp files included."""
    folder = model_folder(cache_dir, url)
    total = 0
    for path in folder.rglob("*") if folder.is_dir() else ():
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:  # a temp file renamed since the listing
            pass
    return total
