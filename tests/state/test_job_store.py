"""The job store's state changes, each of which two replicas may race on, on both backends:
SQLite with local files (one machine) and PostgreSQL with an S3 bucket (a cluster), real servers."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from deployments.settings import ServiceSettings
from deployments.state.database import refuse_network_filesystem
from deployments.state.store import JobStatus, JobStore


@pytest.fixture(params=["sqlite+local", "postgresql+s3"])
def open_store(request, tmp_path):
    """A function that opens the store (again): the same database and files each time."""
    if request.param == "sqlite+local":
        return lambda: JobStore(tmp_path)
    postgres, s3 = request.getfixturevalue("postgres"), request.getfixturevalue("s3")
    settings = ServiceSettings(data_dir=tmp_path, job_database_url=postgres.new_database(),
                               storage_url=s3.new_prefix(), **s3.settings())
    return lambda: JobStore.from_settings(settings)


def _stored_results(store: JobStore, job_id: str) -> list[str]:
    """The result files the store holds for a job, wherever it keeps them."""
    if store.backend == "sqlite":
        folder = store.root / "results" / job_id
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    files = store.files
    found = files.client.list_objects_v2(Bucket=files.bucket, Prefix=f"{files.prefix}results/{job_id}/")
    return sorted(item["Key"].rsplit("/", 1)[1] for item in found.get("Contents", []))


def _read(location: Path | str) -> bytes:
    return location.read_bytes() if isinstance(location, Path) else httpx.get(location).raise_for_status().content


def test_a_job_is_claimed_once_and_a_cancelled_one_keeps_no_files(open_store):
    store = open_store()
    job = store.create_job("source-separation", "htdemucs", {"file_id": "f"})
    claimed = store.claim(job.id)
    assert claimed.status == JobStatus.running
    assert store.claim(job.id) is None  # a second replica gets nothing
    assert store.cancel(job.id)
    assert not store.heartbeat(claimed, 0.5)  # the worker learns it was cancelled
    with store.job_staging(claimed) as staged:
        (staged / "vocals.wav").write_bytes(b"RIFF")
        assert not store.complete(claimed, staged)
    assert store.get_job(job.id).status == JobStatus.cancelled
    assert _stored_results(store, job.id) == []
    assert list((store.root / "staging").iterdir()) == []


def test_eight_racing_claims_give_the_job_to_one(open_store):
    store = open_store()
    job = store.create_job("text-embedding", "all-minilm-l6-v2", {"texts": ["a"]})
    stores = [open_store() for _ in range(8)]  # as eight replicas, each with its own connections
    winners, start = [], threading.Barrier(8)

    def claim(replica: JobStore) -> None:
        start.wait()
        if replica.claim(job.id):
            winners.append(replica)

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and store.get_job(job.id).attempts == 1


def test_completed_files_are_listed_and_the_store_reopens_with_them(open_store):
    store = open_store()
    job = store.create_job("source-separation", "htdemucs", {})
    claimed = store.claim(job.id)
    with store.job_staging(claimed) as staged:
        (staged / "drums.wav").write_bytes(b"1234")
        assert store.complete(claimed, staged, {"stems": ["drums"]})
    reopened = open_store().get_job(job.id)
    assert reopened.status == JobStatus.completed and reopened.progress == 1
    assert [(f.name, f.size) for f in reopened.files] == [("drums.wav", 4)]
    assert reopened.output == {"stems": ["drums"]}
    assert _read(store.result_location(reopened, "drums.wav")) == b"1234"
    assert store.delete_job(job.id) and _stored_results(store, job.id) == []


def test_an_upload_is_stored_whole_and_read_back_elsewhere(open_store, tmp_path):
    store = open_store()
    staged = tmp_path / "clip.wav"
    staged.write_bytes(b"RIFF" + bytes(range(256)) * 40)
    upload = store.add_upload("separation", "clip.wav", staged, {"duration": 1.5})
    again = open_store().get_upload(upload.file_id)
    assert again == upload and again.info == {"duration": 1.5}
    assert open_store().read_upload(again) == b"RIFF" + bytes(range(256)) * 40
    assert store.get_upload("missing") is None


def test_a_silent_worker_loses_its_job_until_the_attempts_run_out(open_store):
    store = open_store()
    job = store.create_job("source-separation", "htdemucs", {})
    for attempt in (1, 2):
        assert store.claim(job.id).attempts == attempt
        assert store.requeue_lost(lease_seconds=60, max_attempts=2) == []  # still alive
        time.sleep(0.05)
        requeued = store.requeue_lost(lease_seconds=0.01, max_attempts=2)
        if attempt == 1:
            assert [j.id for j in requeued] == [job.id] and requeued[0].status == JobStatus.pending
    failed = store.get_job(job.id)
    assert failed.status == JobStatus.failed
    assert failed.error == "The worker running this job was lost 2 times; giving up"
    assert store.counts()["failed"] >= 1


def test_a_worker_presumed_lost_can_no_longer_write(open_store):
    store = open_store()
    job = store.create_job("source-separation", "htdemucs", {})
    first = store.claim(job.id)
    first_staging = store.job_staging(first)  # the first worker's folder, never cleaned up
    leftover = first_staging.__enter__()
    (leftover / "half.wav").write_bytes(b"RI")
    time.sleep(0.05)
    store.requeue_lost(lease_seconds=0.01, max_attempts=3)
    second = store.claim(job.id)
    assert second.attempts == 2 and not leftover.exists()  # the new attempt clears the old one's files
    assert not store.heartbeat(first) and not store.fail(first, "late")
    with store.job_staging(first) as late:  # the lost worker finishing late writes nothing that counts
        (late / "vocals.wav").write_bytes(b"late")
        assert not store.complete(first, late)
    assert store.get_job(job.id).status == JobStatus.running
    with store.job_staging(second) as staged:
        (staged / "vocals.wav").write_bytes(b"second")
        assert store.complete(second, staged)
    finished = store.get_job(job.id)
    assert _read(store.result_location(finished, "vocals.wav")) == b"second"
    store.probe()


def test_sqlite_on_a_network_filesystem_is_refused_with_the_setting_to_use():
    mounts = ("/dev/sda1 / ext4 rw 0 0\n"
              "fs-0123.efs.us-west-2.amazonaws.com:/ /mnt/models nfs4 rw,vers=4.1 0 0\n")
    with pytest.raises(RuntimeError, match=r"network filesystem \(nfs4\).*INFERENCE_JOB_DATABASE_URL=postgresql"):
        refuse_network_filesystem(Path("/mnt/models/jobs"), mounts)
    refuse_network_filesystem(Path("/home/me/jobs"), mounts)  # local disk: fine
