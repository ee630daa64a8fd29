"""Where uploads and result files live: a local directory (one machine) or an S3-compatible bucket
(a cluster, where no directory is shared). The job store decides when a file counts; these classes
only put, read and drop whole files.

Both write all-or-nothing: a local file is renamed into place, an S3 object is visible only once
its upload is whole. Results are put before the job's row is marked completed, and dropped again
when that conditional update loses, so a row never points at a missing or partial file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

from deployments.settings import ServiceSettings
from deployments.state.object_storage import fetch_object, list_objects, parse_s3_url, s3_client
from deployments.state.safe_paths import display_filename, inside, stored_name


class JobFiles(Protocol):
    def put_upload(self, file_id: str, filename: str, staged_file: Path) -> None: ...
    def upload_path(self, file_id: str, filename: str) -> Path: ...
    def drop_upload(self, file_id: str, filename: str) -> None: ...
    def put_results(self, job_id: str, attempt: int, staged: Path) -> None: ...
    def drop_results(self, job_id: str, attempt: int | None = None) -> None: ...
    def result_location(self, job_id: str, attempt: int, name: str) -> Path | str: ...


class LocalFiles:
    """`<root>/uploads/<file_id>/upload.<ext>` and `<root>/results/<job_id>/<name>`, on the staging folder's
    filesystem so every move is a rename. Every path goes through `inside`: ids and names never leave it."""

    def __init__(self, root: Path):
        self.root = root
        for folder in ("uploads", "results"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def put_upload(self, file_id: str, filename: str, staged_file: Path) -> None:
        folder = inside(self.root / "uploads", file_id)
        folder.mkdir()
        staged_file.replace(inside(folder, stored_name(filename)))

    def upload_path(self, file_id: str, filename: str) -> Path:
        path = inside(self.root / "uploads", file_id, stored_name(filename))
        if not path.exists():  # stored by a version before service-made names (already a plain base name)
            legacy = inside(self.root / "uploads", file_id, display_filename(filename))
            return legacy if legacy.is_file() else path
        return path

    def drop_upload(self, file_id: str, filename: str) -> None:
        shutil.rmtree(inside(self.root / "uploads", file_id), ignore_errors=True)

    def put_results(self, job_id: str, attempt: int, staged: Path) -> None:
        final = inside(self.root / "results", job_id)
        shutil.rmtree(final, ignore_errors=True)  # left by an earlier attempt that died after its rename
        staged.replace(final)

    def drop_results(self, job_id: str, attempt: int | None = None) -> None:
        shutil.rmtree(inside(self.root / "results", job_id), ignore_errors=True)

    def result_location(self, job_id: str, attempt: int, name: str) -> Path:
        return inside(self.root / "results", job_id, name)


class S3Files:
    """`<prefix>/uploads/<file_id>/<name>` and `<prefix>/results/<job_id>/<attempt>/<name>`: each attempt
    writes its own keys, so a late attempt can never overwrite the files a row points at. Uploads a
    worker reads are fetched once into a local scratch folder."""

    def __init__(self, settings: ServiceSettings, scratch: Path):
        assert settings.storage_url
        self.bucket, prefix = parse_s3_url(settings.storage_url)
        self.prefix = f"{prefix}/" if prefix else ""
        self.scratch = scratch
        self.expires = settings.presigned_url_seconds
        self.client: Any = s3_client(settings)

    def put_upload(self, file_id: str, filename: str, staged_file: Path) -> None:
        self.client.upload_file(str(staged_file), self.bucket, self._upload_key(file_id, filename))

    def upload_path(self, file_id: str, filename: str) -> Path:
        local = inside(self.scratch / "uploads", file_id, stored_name(filename))
        if not local.is_file():
            fetch_object(self.client, self.bucket, self._upload_key(file_id, filename), local)
        return local

    def drop_upload(self, file_id: str, filename: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._upload_key(file_id, filename))
        shutil.rmtree(inside(self.scratch / "uploads", file_id), ignore_errors=True)

    def _upload_key(self, file_id: str, filename: str) -> str:
        inside(self.scratch, file_id)  # an id is one plain path part, in a key as on disk
        return f"{self.prefix}uploads/{file_id}/{stored_name(filename)}"

    def put_results(self, job_id: str, attempt: int, staged: Path) -> None:
        for path in sorted(staged.iterdir()):
            self.client.upload_file(str(path), self.bucket, f"{self.prefix}results/{job_id}/{attempt}/{path.name}")

    def drop_results(self, job_id: str, attempt: int | None = None) -> None:
        prefix = f"{self.prefix}results/{job_id}" + (f"/{attempt}" if attempt is not None else "")
        keys = [f"{prefix}/{key}" for key in list_objects(self.client, self.bucket, prefix)]
        for start in range(0, len(keys), 1000):  # the API's batch limit
            self.client.delete_objects(Bucket=self.bucket,
                                       Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})

    def result_location(self, job_id: str, attempt: int, name: str) -> str:
        return self.client.generate_presigned_url(
            "get_object", ExpiresIn=self.expires,
            Params={"Bucket": self.bucket, "Key": f"{self.prefix}results/{job_id}/{attempt}/{name}",
                    "ResponseContentDisposition": f'attachment; filename="{name}"'})
