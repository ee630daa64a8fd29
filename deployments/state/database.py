"""The job tables and the engine that holds them: SQLite on one machine, PostgreSQL on a cluster,
through SQLAlchemy Core so both run the same statements. Tables are created at start if missing.

SQLite's WAL mode needs shared memory between its writers, which a network filesystem (NFS, EFS,
SMB...) does not give: writers on two nodes corrupt the database. So SQLite on a filesystem that
/proc/mounts names as a network one is refused with the setting to use instead.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

metadata = sa.MetaData()

health = sa.Table(
    "health", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("checked_at", sa.Float, nullable=False),
)
uploads = sa.Table(
    "uploads", metadata,
    sa.Column("file_id", sa.Text, primary_key=True),
    sa.Column("family", sa.Text, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("info", sa.Text, nullable=False),
    sa.Column("owner", sa.Text),  # hash of the API key that made it (auth.owner_of); None: no keys
)
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("progress", sa.Float, nullable=False, server_default="0"),
    sa.Column("message", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("files", sa.Text, nullable=False, server_default="[]"),
    sa.Column("output", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("owner", sa.Text),
    sa.Column("dispatched_at", sa.Float),  # a pending job's dispatch lease (jobs/dispatch.py)
    sa.Column("request_key", sa.Text),  # '<owner>:<Idempotency-Key>' of the request that made it, if it sent one
)
sa.Index("jobs_by_status", jobs.c.status, jobs.c.created_at)
sa.Index("jobs_by_owner", jobs.c.owner, jobs.c.created_at)
sa.Index("jobs_by_request_key", jobs.c.request_key, unique=True)
runtime_models = sa.Table(  # models added at run time (registry/runtime.py), one entry as JSON each
    "runtime_models", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("entry", sa.Text, nullable=False),
)
saved_voices = sa.Table(  # voices users saved for cloning models (POST /voices); the sample is an upload
    "saved_voices", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("model_id", sa.Text, nullable=False),
    sa.Column("file_id", sa.Text, nullable=False),
    sa.Column("transcript", sa.Text, nullable=False, server_default=""),
    sa.Column("duration", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("owner", sa.Text),
)
current_models = sa.Table(  # the model a task's requests get when they name none (PUT /models/current/{task})
    "current_models", metadata,
    sa.Column("task", sa.Text, primary_key=True),
    sa.Column("model_id", sa.Text, nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
)

NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs",
                       "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.mountpoint-s3", "fuse.juicefs", "efs"}


def filesystem_of(path: Path, mounts: str) -> str:
    """The filesystem type /proc/mounts (its text in `mounts`) gives the deepest mount holding `path`."""
    best, kind = "", "unknown"
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (str(path) == point or str(path).startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def refuse_network_filesystem(path: Path, mounts: str | None = None) -> None:
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:  # not Linux: nothing to go by
            return
    kind = filesystem_of(path.resolve(), mounts)
    if kind in NETWORK_FILESYSTEMS:
        raise RuntimeError(
            f"The job database {path} is on a network filesystem ({kind}); SQLite does not work there "
            "(writers on different nodes corrupt it). Set INFERENCE_JOB_DATABASE_URL=postgresql://... on a "
            "cluster, or INFERENCE_DATA_DIR to a local disk on one machine.")


def create_engine(url: str | None, sqlite_path: Path) -> sa.Engine:
    """The engine for `url` (None: SQLite at `sqlite_path`), with the tables in place."""
    if url is None:
        refuse_network_filesystem(sqlite_path.parent)
        engine = sa.create_engine(f"sqlite:///{sqlite_path}", connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA journal_mode=WAL"))
    else:
        for plain in ("postgresql://", "postgres://"):  # the URL as PostgreSQL writes it, driven by psycopg 3
            if url.startswith(plain):
                url = "postgresql+psycopg://" + url[len(plain):]
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=8)
    with engine.begin() as db:
        if engine.dialect.name == "postgresql":  # replicas starting together: one creates, the others wait
            db.execute(sa.text("SELECT pg_advisory_xact_lock(7284001)"))
        metadata.create_all(db)
        add_missing_columns(db)
    return engine


def add_missing_columns(db: sa.Connection) -> None:
    """Columns added since a table was created (a database from an earlier version): nullable ones only,
    so ADD COLUMN is all it takes on SQLite and PostgreSQL alike; their indexes with them."""
    inspector = sa.inspect(db)
    for table in metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                db.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                                   f"{column.type.compile(db.dialect)}"))
        for index in table.indexes:
            index.create(db, checkfirst=True)
