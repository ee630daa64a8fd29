"""The job store's state changes, each of which two replicas may race on."""

from __future__ import annotations

import time

from deployments.jobs.store import JobStatus, JobStore


def test_a_job_is_claimed_once_and_a_cancelled_one_keeps_no_files(tmp_path):
    store = JobStore(tmp_path)
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
    assert not (tmp_path / "results" / job.id).exists()
    assert list((tmp_path / "staging").iterdir()) == []


def test_completed_files_are_listed_and_the_store_reopens_with_them(tmp_path):
    store = JobStore(tmp_path)
    job = store.create_job("source-separation", "htdemucs", {})
    claimed = store.claim(job.id)
    with store.job_staging(claimed) as staged:
        (staged / "drums.wav").write_bytes(b"1234")
        assert store.complete(claimed, staged, {"stems": ["drums"]})
    reopened = JobStore(tmp_path).get_job(job.id)
    assert reopened.status == JobStatus.completed and reopened.progress == 1
    assert [(f.name, f.size) for f in reopened.files] == [("drums.wav", 4)]
    assert reopened.output == {"stems": ["drums"]}
    assert store.result_path(job.id, "drums.wav").read_bytes() == b"1234"


def test_a_silent_worker_loses_its_job_until_the_attempts_run_out(tmp_path):
    store = JobStore(tmp_path)
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


def test_a_worker_presumed_lost_can_no_longer_write(tmp_path):
    store = JobStore(tmp_path)
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
    assert store.get_job(job.id).status == JobStatus.running
    with store.job_staging(second) as staged:
        assert store.complete(second, staged)
