"""The job store: uploads and jobs in SQLite, their files in a directory beside it.

Every file enters the store through a staging folder and an atomic rename, and a row points at
it only after the rename, so a crash leaves no half-written upload or result behind. Status
changes are single conditional UPDATEs, so two replicas can never both claim or finish a job.
On a cluster the directory must be shared storage (like the model cache), since workers on any
node write results into it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


FINISHED = (JobStatus.completed, JobStatus.failed, JobStatus.cancelled)


class Upload(BaseModel):
    file_id: str
    family: str
    filename: str
    size: int
    created_at: float
    info: dict[str, Any] = Field(default_factory=dict, description="What the upload check learned, e.g. duration.")


class ResultFile(BaseModel):
    name: str
    size: int


class Job(BaseModel):
    id: str
    task: str
    model: str
    status: JobStatus
    progress: float = 0.0
    message: str | None = None
    error: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    files: list[ResultFile] = Field(default_factory=list)
    output: dict[str, Any] | None = None
    attempts: int = 0
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY, checked_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    file_id TEXT PRIMARY KEY, family TEXT NOT NULL, filename TEXT NOT NULL, size INTEGER NOT NULL,
    created_at REAL NOT NULL, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, task TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0, message TEXT, error TEXT, input TEXT NOT NULL,
    files TEXT NOT NULL DEFAULT '[]', output TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, heartbeat_at REAL);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at);
"""
_JSON_COLUMNS = ("info", "input", "files", "output")


class JobStore:
    """One instance per process; every method opens its own short SQLite connection (thread-safe)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for folder in ("uploads", "results", "staging"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self._db_path = self.root / "jobs.sqlite3"
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self._db_path, timeout=30)) as db:
            db.row_factory = sqlite3.Row
            with db:  # one transaction, committed on success
                yield db

    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        values = dict(row)
        for column in _JSON_COLUMNS:
            if column in values and values[column] is not None:
                values[column] = json.loads(values[column])
        return values

    # --- staging -----------------------------------------------------------------------------
    @contextmanager
    def staging(self, prefix: str = "upload-") -> Iterator[Path]:
        """A fresh folder on the store's filesystem; whatever is left in it is removed on exit."""
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root / "staging"))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # --- uploads -----------------------------------------------------------------------------
    def add_upload(self, family: str, filename: str, staged_file: Path, info: dict[str, Any]) -> Upload:
        upload = Upload(file_id=uuid.uuid4().hex, family=family, filename=filename,
                        size=staged_file.stat().st_size, created_at=time.time(), info=info)
        folder = self.root / "uploads" / upload.file_id
        folder.mkdir()
        staged_file.replace(folder / filename)
        with self._db() as db:
            db.execute("INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
                       (upload.file_id, family, filename, upload.size, upload.created_at, json.dumps(info)))
        return upload

    def get_upload(self, file_id: str) -> Upload | None:
        with self._db() as db:
            row = self._row(db.execute("SELECT * FROM uploads WHERE file_id = ?", (file_id,)).fetchone())
        return Upload(**row) if row else None

    def upload_path(self, upload: Upload) -> Path:
        return self.root / "uploads" / upload.file_id / upload.filename

    # --- jobs --------------------------------------------------------------------------------
    def create_job(self, task: str, model: str, job_input: dict[str, Any]) -> Job:
        job = Job(id=uuid.uuid4().hex, task=task, model=model, status=JobStatus.pending,
                  input=job_input, created_at=time.time())
        with self._db() as db:
            db.execute("INSERT INTO jobs (id, task, model, status, input, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (job.id, task, model, job.status, json.dumps(job_input), job.created_at))
        return job

    def get_job(self, job_id: str) -> Job | None:
        with self._db() as db:
            row = self._row(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
        return Job(**row) if row else None

    def list_jobs(self, status: JobStatus | None = None, limit: int = 100) -> list[Job]:
        query, args = "SELECT * FROM jobs", []
        if status:
            query, args = query + " WHERE status = ?", [status]
        with self._db() as db:
            rows = db.execute(query + " ORDER BY created_at DESC LIMIT ?", (*args, limit)).fetchall()
        return [Job(**self._row(row)) for row in rows]

    def counts(self) -> dict[str, int]:
        """Jobs by status, every status present (0 when none): what the jobs gauge publishes."""
        with self._db() as db:
            rows = dict(db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        return {status.value: rows.get(status.value, 0) for status in JobStatus}

    def probe(self) -> None:
        """A write and a read back, as /health checks the store can record jobs (it times the call)."""
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)", (time.time(),))
            db.execute("SELECT checked_at FROM health WHERE id = 1").fetchone()

    def result_path(self, job_id: str, name: str) -> Path:
        return self.root / "results" / job_id / name

    def job_staging(self, job: Job):
        """The staging folder of one attempt at a job (see `claim`)."""
        return self.staging(prefix=f"job-{job.id}-{job.attempts}-")

    def claim(self, job_id: str) -> Job | None:
        """pending -> running for exactly one caller; None when the job is gone or someone else has it.

        The claim starts a new attempt and clears what a lost earlier attempt left in staging. The
        attempt number fences every later write, so a worker that was presumed lost but still runs
        can no longer touch the job."""
        now = time.time()
        with self._db() as db:
            claimed = db.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, heartbeat_at = ?,"
                " started_at = COALESCE(started_at, ?), message = NULL WHERE id = ? AND status = 'pending'",
                (now, now, job_id)).rowcount
        if not claimed:
            return None
        for leftover in (self.root / "staging").glob(f"job-{job_id}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return self.get_job(job_id)

    def heartbeat(self, job: Job, progress: float | None = None, message: str | None = None) -> bool:
        """Record liveness (and progress); False when this attempt no longer runs, e.g. cancelled."""
        with self._db() as db:
            return bool(db.execute(
                "UPDATE jobs SET heartbeat_at = ?, progress = COALESCE(?, progress), message = COALESCE(?, message)"
                " WHERE id = ? AND status = 'running' AND attempts = ?",
                (time.time(), progress, message, job.id, job.attempts)).rowcount)

    def complete(self, job: Job, staged: Path, output: dict[str, Any] | None = None) -> bool:
        """Move the staged result folder into place, then mark the job completed (if still running)."""
        if not self.heartbeat(job):
            return False
        files = [ResultFile(name=path.name, size=path.stat().st_size) for path in sorted(staged.iterdir())]
        final = self.root / "results" / job.id
        shutil.rmtree(final, ignore_errors=True)  # left by an earlier attempt that died after its rename
        staged.replace(final)
        with self._db() as db:
            done = db.execute(
                "UPDATE jobs SET status = 'completed', progress = 1, message = NULL, finished_at = ?, files = ?,"
                " output = ? WHERE id = ? AND status = 'running' AND attempts = ?",
                (time.time(), json.dumps([f.model_dump() for f in files]),
                 json.dumps(output) if output is not None else None, job.id, job.attempts)).rowcount
        if not done:
            shutil.rmtree(final, ignore_errors=True)
        return bool(done)

    def fail(self, job: Job, error: str) -> bool:
        with self._db() as db:
            return bool(db.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?"
                " WHERE id = ? AND status = 'running' AND attempts = ?",
                (error, time.time(), job.id, job.attempts)).rowcount)

    def cancel(self, job_id: str) -> bool:
        """pending/running -> cancelled; a running worker notices at its next heartbeat."""
        with self._db() as db:
            return bool(db.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ? "
                "WHERE id = ? AND status IN ('pending', 'running')",
                (time.time(), job_id)).rowcount)

    def delete_job(self, job_id: str) -> bool:
        """Remove a finished job and its files."""
        with self._db() as db:
            deleted = db.execute("DELETE FROM jobs WHERE id = ? AND status IN ('completed', 'failed', 'cancelled')",
                                 (job_id,)).rowcount
        if deleted:
            shutil.rmtree(self.root / "results" / job_id, ignore_errors=True)
        return bool(deleted)

    def requeue_lost(self, lease_seconds: float, max_attempts: int) -> list[Job]:
        """Running jobs whose worker stopped heart-beating go back to pending, or fail once they have
        been tried `max_attempts` times; returns the re-queued ones, for the caller to dispatch."""
        stale = time.time() - lease_seconds
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?, error = 'The worker running this job was lost '"
                " || attempts || ' times; giving up' WHERE status = 'running' AND heartbeat_at < ? AND attempts >= ?",
                (time.time(), stale, max_attempts))
            lost = [row["id"] for row in db.execute(
                "SELECT id FROM jobs WHERE status = 'running' AND heartbeat_at < ?", (stale,))]
            db.executemany("UPDATE jobs SET status = 'pending', message = 'Re-queued after its worker was lost'"
                           " WHERE id = ? AND status = 'running'", [(job_id,) for job_id in lost])
        return [job for job in map(self.get_job, lost) if job]
