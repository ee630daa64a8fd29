"""The job store: uploads and jobs as rows (SQLite, or PostgreSQL on a cluster), their files in a
local directory or an S3-compatible bucket (state/files.py).

Every file enters the store through a local staging folder and is put whole, and a row points at
it only after that, so a crash leaves no half-written upload or result behind. Status changes are
single conditional UPDATEs, so two replicas can never both claim or finish a job.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field

from deployments.settings import ServiceSettings
from deployments.state.database import create_engine, health, jobs, saved_voices, uploads
from deployments.state.files import JobFiles, LocalFiles, S3Files
from deployments.state.runtime_models import RuntimeModelRows
from deployments.state.safe_paths import display_filename
from deployments.state.saved_voices import SavedVoiceRows


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
    owner: str | None = None  # hash of the API key that made it; None when no keys are configured


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
    owner: str | None = None


_JSON_COLUMNS = ("info", "input", "files", "output")
ACTIVE = (JobStatus.pending, JobStatus.running)


def _row(row: sa.Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    values = dict(row._mapping)
    for column in _JSON_COLUMNS:
        if column in values and values[column] is not None:
            values[column] = json.loads(values[column])
    return values


def _mtime(path: Path) -> float:
    """When `path` last changed; now when it is already gone (another replica's sweep, a job that ended)."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()


def _attempt(job: Job) -> Any:
    """The WHERE clause that fences a write to the attempt `job` holds."""
    return (jobs.c.id == job.id) & (jobs.c.status == JobStatus.running) & (jobs.c.attempts == job.attempts)


class JobStore:
    """One instance per process; every method is one short transaction on a pooled connection
    (thread-safe). `root` holds staging (and, with the defaults, the database and files)."""

    def __init__(self, root: Path, database_url: str | None = None, files: JobFiles | None = None):
        self.root = Path(root)
        (self.root / "staging").mkdir(parents=True, exist_ok=True)
        self.files = files or LocalFiles(self.root)
        self._engine = create_engine(database_url, self.root / "jobs.sqlite3")

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> JobStore:
        if not settings.storage_url:
            return cls(settings.data_dir, settings.job_database_url)
        # nothing the cluster shares is on disk: data_dir is this node's scratch space
        return cls(settings.data_dir, settings.job_database_url, S3Files(settings, settings.data_dir / "scratch"))

    def runtime_models(self) -> RuntimeModelRows:
        """The models added at run time, in this store's database (see deployments/state/runtime_models.py)."""
        return RuntimeModelRows(self._engine)

    def saved_voices(self) -> SavedVoiceRows:
        """Voices saved for cloning models, in this store's database (see deployments/state/saved_voices.py)."""
        return SavedVoiceRows(self._engine)

    @property
    def backend(self) -> str:
        return self._engine.dialect.name

    def _update(self, where: Any, **values: Any) -> bool:
        with self._engine.begin() as db:
            return bool(db.execute(jobs.update().where(where).values(**values)).rowcount)

    # --- staging -----------------------------------------------------------------------------
    @contextmanager
    def staging(self, prefix: str = "upload-") -> Iterator[Path]:
        """A fresh local folder; whatever is left in it is removed on exit."""
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root / "staging"))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # --- uploads -----------------------------------------------------------------------------
    def add_upload(self, family: str, filename: str, staged_file: Path, info: dict[str, Any],
                   owner: str | None = None) -> Upload:
        """Keep a staged file; it is stored under a name the service makes, `filename` (the client's,
        made harmless) is only its metadata."""
        upload = Upload(file_id=uuid.uuid4().hex, family=family, filename=display_filename(filename),
                        size=staged_file.stat().st_size, created_at=time.time(), info=info, owner=owner)
        self.files.put_upload(upload.file_id, filename, staged_file)
        with self._engine.begin() as db:
            db.execute(uploads.insert().values(**upload.model_dump(exclude={"info"}), info=json.dumps(info)))
        return upload

    def get_upload(self, file_id: str) -> Upload | None:
        with self._engine.begin() as db:
            row = _row(db.execute(uploads.select().where(uploads.c.file_id == file_id)).first())
        return Upload(**row) if row else None

    def upload_path(self, upload: Upload) -> Path:
        """A local path to the upload's file (fetched first when the files are in S3: call off the loop)."""
        return self.files.upload_path(upload.file_id, upload.filename)

    def read_upload(self, upload: Upload) -> bytes:
        return self.upload_path(upload).read_bytes()

    # --- jobs --------------------------------------------------------------------------------
    def create_job(self, task: str, model: str, job_input: dict[str, Any], owner: str | None = None,
                   idempotency_key: str | None = None) -> Job:
        """A new pending job; with `idempotency_key`, the job an earlier request of the same owner made
        with that key, if there is one (a replayed request creates nothing twice)."""
        job = Job(id=uuid.uuid4().hex, task=task, model=model, status=JobStatus.pending,
                  input=job_input, created_at=time.time(), owner=owner)
        request_key = f"{owner or ''}:{idempotency_key}" if idempotency_key else None
        if request_key and (earlier := self._job_by_request_key(request_key)):
            return earlier
        try:
            with self._engine.begin() as db:  # leased to its creator, which dispatches it at once
                db.execute(jobs.insert().values(id=job.id, task=task, model=model, status=job.status,
                                                input=json.dumps(job_input), created_at=job.created_at, owner=owner,
                                                dispatched_at=job.created_at, request_key=request_key))
        except sa.exc.IntegrityError:  # the same request, replayed at the same moment elsewhere, won
            if request_key and (earlier := self._job_by_request_key(request_key)):
                return earlier
            raise
        return job

    def _job_by_request_key(self, request_key: str) -> Job | None:
        with self._engine.begin() as db:
            row = _row(db.execute(jobs.select().where(jobs.c.request_key == request_key)).first())
        return Job(**row) if row else None

    def get_job(self, job_id: str) -> Job | None:
        with self._engine.begin() as db:
            row = _row(db.execute(jobs.select().where(jobs.c.id == job_id)).first())
        return Job(**row) if row else None

    def list_jobs(self, status: JobStatus | None = None, limit: int = 100, owner: str | None = None) -> list[Job]:
        """The newest jobs (of `owner` alone, when given)."""
        query = jobs.select().order_by(jobs.c.created_at.desc()).limit(limit)
        if status:
            query = query.where(jobs.c.status == status)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        with self._engine.begin() as db:
            return [Job(**(_row(row) or {})) for row in db.execute(query)]

    def counts(self) -> dict[str, int]:
        """Jobs by status, every status present (0 when none): what the jobs gauge publishes."""
        with self._engine.begin() as db:
            query = sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)
            rows: dict[str, int] = dict(db.execute(query).all())
        return {status.value: rows.get(status.value, 0) for status in JobStatus}

    def probe(self) -> None:
        """A write and a read back, as /health checks the store can record jobs (it times the call)."""
        with self._engine.begin() as db:
            if not db.execute(health.update().where(health.c.id == 1).values(checked_at=time.time())).rowcount:
                db.execute(health.insert().values(id=1, checked_at=time.time()))
            db.execute(sa.select(health.c.checked_at).where(health.c.id == 1)).one()

    def result_location(self, job: Job, name: str) -> Path | str:
        """A completed job's file: a local path, or a presigned URL when the files are in S3."""
        return self.files.result_location(job.id, job.attempts, name)

    def job_staging(self, job: Job):
        """The staging folder of one attempt at a job (see `claim`)."""
        return self.staging(prefix=f"job-{job.id}-{job.attempts}-")

    def claim(self, job_id: str) -> Job | None:
        """pending -> running for exactly one caller; None when the job is gone or someone else has it.

        The claim starts a new attempt and clears what a lost earlier attempt left in staging. The
        attempt number fences every later write, so a worker that was presumed lost but still runs
        can no longer touch the job."""
        now = time.time()
        claimed = self._update((jobs.c.id == job_id) & (jobs.c.status == JobStatus.pending),
                               status=JobStatus.running, attempts=jobs.c.attempts + 1, heartbeat_at=now,
                               started_at=sa.func.coalesce(jobs.c.started_at, now), message=None)
        if not claimed:
            return None
        for leftover in (self.root / "staging").glob(f"job-{job_id}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return self.get_job(job_id)

    def heartbeat(self, job: Job, progress: float | None = None, message: str | None = None) -> bool:
        """Record liveness (and progress); False when this attempt no longer runs, e.g. cancelled."""
        values: dict[str, Any] = {"heartbeat_at": time.time()}
        if progress is not None:
            values["progress"] = progress
        if message is not None:
            values["message"] = message
        return self._update(_attempt(job), **values)

    def complete(self, job: Job, staged: Path, output: dict[str, Any] | None = None) -> bool:
        """Put the staged result files, then mark the job completed (if this attempt still runs)."""
        if not self.heartbeat(job):
            return False
        files = [ResultFile(name=path.name, size=path.stat().st_size) for path in sorted(staged.iterdir())]
        self.files.put_results(job.id, job.attempts, staged)
        done = self._update(_attempt(job), status=JobStatus.completed, progress=1, message=None,
                            finished_at=time.time(), files=json.dumps([f.model_dump() for f in files]),
                            output=json.dumps(output) if output is not None else None)
        if not done:
            self.files.drop_results(job.id, job.attempts)
        return done

    def fail(self, job: Job, error: str) -> bool:
        return self._update(_attempt(job), status=JobStatus.failed, error=error, finished_at=time.time())

    def cancel(self, job_id: str) -> bool:
        """pending/running -> cancelled; a running worker notices at its next heartbeat."""
        return self._update((jobs.c.id == job_id) & jobs.c.status.in_(ACTIVE),
                            status=JobStatus.cancelled, finished_at=time.time())

    def delete_job(self, job_id: str) -> bool:
        """Remove a finished job and its files."""
        with self._engine.begin() as db:
            deleted = db.execute(jobs.delete().where((jobs.c.id == job_id) & jobs.c.status.in_(FINISHED))).rowcount
        if deleted:
            self.files.drop_results(job_id)
        return bool(deleted)

    def renew_dispatch(self, job_ids: list[str]) -> None:
        """Mark pending jobs as held in flight by the caller now (their dispatch lease)."""
        if job_ids:
            self._update(jobs.c.id.in_(job_ids) & (jobs.c.status == JobStatus.pending), dispatched_at=time.time())

    def undispatched(self, lease_seconds: float, held: list[str], limit: int = 1000) -> list[Job]:
        """Pending jobs whose dispatch lease ran out (or never started), oldest first, the caller's own
        (`held`) left out; each returned one is leased to the caller."""
        stale = (jobs.c.status == JobStatus.pending) & sa.or_(
            jobs.c.dispatched_at.is_(None), jobs.c.dispatched_at < time.time() - lease_seconds)
        if held:
            stale &= jobs.c.id.not_in(held)
        with self._engine.begin() as db:
            rows = db.execute(jobs.select().where(stale).order_by(jobs.c.created_at).limit(limit)).all()
        taken = [Job(**(_row(row) or {})) for row in rows]
        self.renew_dispatch([job.id for job in taken])
        return taken

    # --- retention ---------------------------------------------------------------------------
    def expire(self, job_seconds: float, upload_seconds: float, staging_seconds: float) -> dict[str, int]:
        """Delete finished jobs and uploads past their retention, and staging folders a crash left; what
        was deleted, by kind. A saved voice's sample and an upload an active job reads are kept."""
        now = time.time()
        with self._engine.begin() as db:
            old_jobs = db.execute(sa.select(jobs.c.id).where(
                jobs.c.status.in_(FINISHED) & (jobs.c.finished_at < now - job_seconds))).scalars().all()
            active = db.execute(sa.select(jobs.c.id, jobs.c.input).where(jobs.c.status.in_(ACTIVE))).all()
            kept = {*db.execute(sa.select(saved_voices.c.file_id)).scalars(),  # and what an active job reads:
                    *(value for row in active for name, value in json.loads(row.input).items()
                      if name.endswith("file_id") and isinstance(value, str))}  # file_id, voice_sample_file_id
            old_uploads = [row for row in db.execute(sa.select(uploads.c.file_id, uploads.c.filename).where(
                uploads.c.created_at < now - upload_seconds)).all() if row.file_id not in kept]
        deleted = sum(self.delete_job(job_id) for job_id in old_jobs)
        for file_id, filename in old_uploads:
            self.files.drop_upload(file_id, filename)
            with self._engine.begin() as db:
                db.execute(uploads.delete().where(uploads.c.file_id == file_id))
        running = tuple(f"job-{row.id}-" for row in active)  # an active job's staging is in use, however old
        stale = [p for p in (self.root / "staging").iterdir()
                 if _mtime(p) < now - staging_seconds and not p.name.startswith(running)]
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
        return {"jobs": deleted, "uploads": len(old_uploads), "staging": len(stale)}

    def requeue_lost(self, lease_seconds: float, max_attempts: int) -> list[Job]:
        """Running jobs whose worker stopped heart-beating go back to pending, or fail once they have
        been tried `max_attempts` times; returns the re-queued ones, for the caller to dispatch."""
        silent = (jobs.c.status == JobStatus.running) & (jobs.c.heartbeat_at < time.time() - lease_seconds)
        requeued = []
        with self._engine.begin() as db:
            for job_id, attempts in db.execute(sa.select(jobs.c.id, jobs.c.attempts).where(silent)).all():
                # each update re-checks the silence, so a worker that just heart-beat keeps its job
                if attempts >= max_attempts:
                    db.execute(jobs.update().where(silent & (jobs.c.id == job_id)).values(
                        status=JobStatus.failed, finished_at=time.time(),
                        error=f"The worker running this job was lost {attempts} times; giving up"))
                elif db.execute(jobs.update().where(silent & (jobs.c.id == job_id)).values(
                        status=JobStatus.pending, message="Re-queued after its worker was lost")).rowcount:
                    requeued.append(job_id)
        return [job for job in map(self.get_job, requeued) if job]
