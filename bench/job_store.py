"""What the cluster job store costs per job: the life of one job as a worker lives it (create,
claim, three heart-beats, complete with a 1 MB result, read back, fetch the file), on SQLite with
local files (one machine) and on PostgreSQL with S3 (a cluster), side by side in one run, with 1
and 8 workers at once; PostgreSQL with local files too, to tell the database's cost from the files'.
The servers are the tests' real ones (pgserver, SeaweedFS) on this machine.

    .venv/bin/python bench/job_store.py [--jobs 200]

Results, with the machine, go to bench/results/job_store.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for `deployments` and tests/, when run as bench/job_store.py
from bench.embedding_latency import machine  # noqa: E402
from bench.results import write_result  # noqa: E402
from deployments.settings import ServiceSettings  # noqa: E402
from deployments.state.store import JobStore  # noqa: E402
from tests.backing_services import Postgres, start_seaweed  # noqa: E402
from tests.conftest import free_port  # noqa: E402

RESULT = bytes(1 << 20)


def one_job(store: JobStore) -> float:
    started = time.perf_counter()
    job = store.create_job("source-separation", "htdemucs", {"file_id": "bench"})
    claimed = store.claim(job.id)
    for progress in (0.25, 0.5, 0.75):
        store.heartbeat(claimed, progress)
    with store.job_staging(claimed) as staged:
        (staged / "vocals.wav").write_bytes(RESULT)
        assert store.complete(claimed, staged)
    done = store.get_job(job.id)
    location = store.result_location(done, "vocals.wav")
    data = location.read_bytes() if isinstance(location, Path) else httpx.get(location).content
    assert len(data) == len(RESULT)
    return time.perf_counter() - started


def measure(store: JobStore, jobs: int, workers: int) -> dict:
    one_job(store)  # warm: connections, tables, client
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        times = list(pool.map(lambda _: one_job(store), range(jobs)))
    wall = time.perf_counter() - started
    ordered = sorted(times)
    return {"jobs": jobs, "workers": workers, "jobs_per_second": round(jobs / wall, 1),
            "p50_ms": round(statistics.median(times) * 1000, 1),
            "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/job_store.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        postgres, s3 = Postgres(root / "pg"), start_seaweed(root / "s3", free_port)
        try:
            settings = ServiceSettings(data_dir=root / "cluster", job_database_url=postgres.new_database(),
                                       storage_url=s3.new_prefix(), **s3.settings())
            stores = {"sqlite+local": JobStore(root / "local"),  # the database alone, then with S3 files
                      "postgresql+local": JobStore(root / "pg-local", postgres.new_database()),
                      "postgresql+s3": JobStore.from_settings(settings)}
            results = {f"{name}, {workers} worker(s)": measure(store, args.jobs, workers)
                       for workers in (1, 8) for name, store in stores.items()}
        finally:
            s3.process.kill()
            postgres.server.cleanup()
    print(f"{'':32}{'jobs/s':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for name, row in results.items():
        print(f"{name:32}{row['jobs_per_second']:>8}{row['p50_ms']:>9}{row['p99_ms']:>9}")
    ratios = {f"{name} / sqlite+local, {w} worker(s)": round(
        results[f"{name}, {w} worker(s)"]["jobs_per_second"]
        / results[f"sqlite+local, {w} worker(s)"]["jobs_per_second"], 2)
        for name in ("postgresql+local", "postgresql+s3") for w in (1, 8)}
    for name, ratio in ratios.items():
        print(f"{name}: {ratio}x jobs/s")
    result = {"result_bytes": len(RESULT),
              "machine": machine("cpu"), "stores": results, "ratios": ratios}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
