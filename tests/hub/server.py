"""TestHub: enough of the Hugging Face Hub HTTP API for huggingface_hub's snapshot/hf_hub downloads.

Endpoints: GET /api/models/{repo}[/revision/{rev}], GET /api/models/{repo}/tree/{rev}[/{path}],
HEAD/GET /{repo}/resolve/{rev}/{file} (Range supported), and the same under /api/datasets/ and
/datasets/ for dataset repos (e.g. speaker embeddings). Every file is advertised as an LFS file
with its sha256, as the real hub does for weights. Full-file GETs are counted per (repo, file) so
tests can prove a model was fetched once. `cut_once(repo_id, path)` makes the next full GET of that
file stop half-way (connection closed) and the client's following resume request fail, so a test
sees a download die mid-file exactly once. `fail_next(repo_id, path, times)` answers the next `times`
GETs of a file with a 503 (or a 429 with Retry-After), a hub that is down for a while.

Run standalone (for benchmarks):  python -m tests.hub.server --port 0 REPO_ID=FOLDER datasets/REPO_ID=FOLDER ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK = 1 << 20


@dataclass(frozen=True)
class HubFile:
    path: str
    source: Path
    size: int
    sha256: str


@dataclass
class HubRepo:
    repo_id: str
    sha: str
    files: dict[str, HubFile]
    repo_type: str = "model"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class TestHub:
    """Serves folders as hub repos; start() binds 127.0.0.1 on a free port."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.datasets: dict[str, HubRepo] = {}  # dataset repos: their own namespace, as on the hub
        self.downloads: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._cuts: dict[tuple[str, str], str] = {}  # (count key, path) -> "armed" | "cut"
        self._stalls: dict[tuple[str, str], threading.Event] = {}  # (count key, path) -> released when set
        self._failures: dict[tuple[str, str], list] = {}  # (count key, path) -> [GETs left to fail, status]

    def cut_once(self, repo_id: str, path: str, repo_type: str = "model") -> None:
        """The next full GET of `path` sends half the bytes then drops; the resume after it gets a 500."""
        repo = self._repos_of(repo_type)[repo_id]
        with self._lock:
            self._cuts[(_count_key(repo), path)] = "armed"

    def fail_next(self, repo_id: str, path: str, times: int, status: int = 503, repo_type: str = "model") -> None:
        """The next `times` GETs of `path` answer `status` (a 429 says Retry-After: 1) instead of the file."""
        repo = self._repos_of(repo_type)[repo_id]
        with self._lock:
            self._failures[(_count_key(repo), path)] = [times, status]

    def _take_failure(self, repo: HubRepo, path: str) -> int | None:
        with self._lock:
            failure = self._failures.get((_count_key(repo), path))
            if not failure or failure[0] <= 0:
                return None
            failure[0] -= 1
            return failure[1]

    def stall_once(self, repo_id: str, path: str, repo_type: str = "model") -> threading.Event:
        """The next full GET of `path` sends half the bytes, then waits until the returned event is set
        (or 60 s) before it sends the rest: a download caught half-way, for as long as a test needs."""
        repo = self._repos_of(repo_type)[repo_id]
        release = threading.Event()
        with self._lock:
            self._stalls[(_count_key(repo), path)] = release
        return release

    def _take_stall(self, repo: HubRepo, path: str, start: int) -> threading.Event | None:
        with self._lock:
            return self._stalls.pop((_count_key(repo), path), None) if start == 0 else None

    def _take_cut(self, repo: HubRepo, path: str, start: int) -> str | None:
        """'cut' when this GET must stop half-way, 'refuse' when it is the resume after a cut."""
        key = (_count_key(repo), path)
        with self._lock:
            state = self._cuts.get(key)
            if state == "armed" and start == 0:
                self._cuts[key] = "cut"
                return "cut"
            if state == "cut":
                del self._cuts[key]
                return "refuse"
        return None

    def add_repo(self, repo_id: str, folder: str | Path, repo_type: str = "model") -> HubRepo:
        folder = Path(folder)
        files = {}
        for source in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = source.relative_to(folder).as_posix()
            files[rel] = HubFile(rel, source, source.stat().st_size, _sha256(source))
        sha = hashlib.sha1("".join(f"{f.path}:{f.sha256}" for f in files.values()).encode()).hexdigest()
        repo = HubRepo(repo_id, sha, files, repo_type)
        self._repos_of(repo_type)[repo_id] = repo
        return repo

    def _repos_of(self, repo_type: str) -> dict[str, HubRepo]:
        return {"model": self.repos, "dataset": self.datasets}[repo_type]

    def file_downloads(self, repo_id: str, repo_type: str = "model") -> dict[str, int]:
        """Full-file GETs served per file of a repo (files never fetched show 0)."""
        repo = self._repos_of(repo_type)[repo_id]
        with self._lock:
            return {path: self.downloads[(_count_key(repo), path)] for path in repo.files}

    @property
    def url(self) -> str:
        assert self._server is not None, "hub not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self, port: int = 0) -> TestHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="test-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _count(self, repo: HubRepo, path: str) -> None:
        with self._lock:
            self.downloads[(_count_key(repo), path)] += 1


def _count_key(repo: HubRepo) -> str:
    """Model repos count under their id (as before datasets existed), datasets under datasets/{id}."""
    return repo.repo_id if repo.repo_type == "model" else f"datasets/{repo.repo_id}"


REPO = r"(?P<repo>[^/]+/[^/]+)"
# (kind, repo type, path pattern); dataset routes come first, as /datasets/... also fits /{repo}/...
ROUTES = [
    ("info", "dataset", re.compile(rf"^/api/datasets/{REPO}(?:/revision/(?P<rev>[^/]+))?$")),
    ("tree", "dataset", re.compile(rf"^/api/datasets/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")),
    ("resolve", "dataset", re.compile(rf"^/datasets/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")),
    ("info", "model", re.compile(rf"^/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?$")),
    ("tree", "model", re.compile(rf"^/api/models/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")),
    ("resolve", "model", re.compile(rf"^/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")),
]


def _handler_for(hub: TestHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._dispatch(send_body=False)

        def do_GET(self) -> None:
            self._dispatch(send_body=True)

        def _dispatch(self, send_body: bool) -> None:
            path = urlsplit(self.path).path
            for kind, repo_type, pattern in ROUTES:  # noqa: B007 - the match is used after the loop
                match = pattern.match(path)
                if match:
                    break
            else:
                return self._error(404, "Not found", None)
            repo = hub._repos_of(repo_type).get(unquote(match["repo"]))
            if repo is None:
                return self._error(404, "Repository not found", "RepoNotFound")
            revision = unquote(match["rev"] or "main")
            if revision not in ("main", repo.sha):
                return self._error(404, f"Revision {revision} not found", "RevisionNotFound")
            if kind == "info":
                return self._json({"id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.sha, "private": False,
                                   "siblings": [{"rfilename": p} for p in repo.files]}, repo, send_body)
            if kind == "tree":
                prefix = unquote(match["path"] or "").strip("/")
                entries = [
                    {"type": "file", "oid": f.sha256[:40], "size": f.size, "path": f.path,
                     "lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134}}
                    for f in repo.files.values() if not prefix or f.path.startswith(prefix + "/")
                ]
                return self._json(entries, repo, send_body)
            hub_file = repo.files.get(unquote(match["path"]))
            if hub_file is None:
                return self._error(404, "Entry not found", "EntryNotFound", repo)
            self._file(repo, hub_file, send_body)

        def _file(self, repo: HubRepo, hub_file: HubFile, send_body: bool) -> None:
            start, end = 0, hub_file.size - 1
            byte_range = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if byte_range:
                start = int(byte_range[1])
                end = min(int(byte_range[2]) if byte_range[2] else end, end)
            failure = hub._take_failure(repo, hub_file.path) if send_body else None
            if failure is not None:
                return self._error(failure, "Injected fault: the hub is overloaded", None, repo,
                                   {"Retry-After": "1"} if failure == 429 else None)
            fault = hub._take_cut(repo, hub_file.path, start) if send_body else None
            if fault == "refuse":
                return self._error(500, "Injected fault: the hub is unavailable", None, repo)
            self.send_response(206 if byte_range else 200)
            self.send_header("Content-Length", str(max(0, end - start + 1)))
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hub_file.sha256}"')
            self.send_header("X-Linked-Etag", f'"{hub_file.sha256}"')
            self.send_header("X-Linked-Size", str(hub_file.size))
            self.send_header("X-Repo-Commit", repo.sha)
            if byte_range:
                self.send_header("Content-Range", f"bytes {start}-{end}/{hub_file.size}")
            self.end_headers()
            if not send_body:
                return
            if start == 0:
                hub._count(repo, hub_file.path)
            with hub_file.source.open("rb") as handle:
                handle.seek(start)
                remaining = end - start + 1
                if fault == "cut":  # send half, then drop the connection mid-body
                    self.wfile.write(handle.read(remaining // 2))
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                stall = hub._take_stall(repo, hub_file.path, start)
                if stall is not None:  # send half, then wait to be released
                    self.wfile.write(handle.read(remaining // 2))
                    self.wfile.flush()
                    remaining -= remaining // 2
                    stall.wait(60)
                try:
                    while remaining > 0 and (chunk := handle.read(min(CHUNK, remaining))):
                        self.wfile.write(chunk)
                        remaining -= len(chunk)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a cancelled download)
                    self.close_connection = True

        def _json(self, payload: object, repo: HubRepo, send_body: bool) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Repo-Commit", repo.sha)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def _error(self, status: int, message: str, code: str | None, repo: HubRepo | None = None,
                   headers: dict[str, str] | None = None) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if code:
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
            if repo:
                self.send_header("X-Repo-Commit", repo.sha)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("repos", nargs="+", metavar="[datasets/]REPO_ID=FOLDER")
    args = parser.parse_args()
    hub = TestHub()
    for spec in args.repos:
        repo_id, _, folder = spec.partition("=")
        if repo_id.startswith("datasets/"):
            hub.add_repo(repo_id.removeprefix("datasets/"), folder, repo_type="dataset")
        else:
            hub.add_repo(repo_id, folder)
    hub.start(args.port)
    print(hub.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
