"""EmbeddingDeployment: sentence embeddings with dynamic batching across requests."""

from __future__ import annotations

from ray import serve

from deployments.families.embedding.engines import ENGINES, SentenceEncoder
from deployments.families.embedding.protocol import Embeddings
from deployments.serving.batching import raise_failed, run_in_groups
from deployments.serving.model_loading import FamilyDeployment
from deployments.serving.torch_threads import run_inference
from deployments.state.runner import JobContext
from registry import ModelEntry

MAX_BATCH_SIZE = 32
# Batches encoded at once, each on its own thread: a CPU replica runs torch on one thread per batch when
# the box has 2 cores (settings.cpu_threads), so a second batch uses the other core while the first
# encodes (bench/serving_path.py: 1.25x -> 1.62x a hand-rolled server at 16 clients; one batch on two
# torch threads measured worse than one on one). On a GPU the second batch tokenizes while one computes.
CONCURRENT_BATCHES = 2
# How long a batch waits to fill: none while no batch is encoding (a lone request goes at once), this long
# while one is (the requests its answers set free arrive together, and a batch of them beats several).
BUSY_BATCH_WAIT_S = 0.005




# max_ongoing_requests must be at least the batches' sizes, or @serve.batch never fills them.
@serve.deployment(max_ongoing_requests=CONCURRENT_BATCHES * MAX_BATCH_SIZE, health_check_period_s=5)
class EmbeddingDeployment(FamilyDeployment):
    engines = tuple(ENGINES)
    _encoding = 0  # batches encoding now

    async def embed(self, texts: list[str], *, model: str | None = None) -> Embeddings:
        """Embed `texts` with this deployment's model (a pool: `model`); requests arriving together share
        one forward pass."""
        entry = self._entry(model, "text-embedding")
        # Loaded before joining a batch: a failed load fails only its own requests, and a batch
        # never waits on a download.
        await self._models.get(entry)
        return raise_failed(await self._embed_batch((entry.id, texts)))

    async def run_job(self, job_id: str) -> str:
        """Embeddings as a queued job (seed 004's /api/v1/run): the vectors become the job's output."""
        return await self._jobs.run(job_id, self._embed_job)

    async def _embed_job(self, context: JobContext) -> dict:
        result = await self.embed(context.job.input["texts"], model=context.job.model)
        return {"embeddings": result.vectors, "dimensions": result.dimensions, "token_counts": result.token_counts}

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=0, max_concurrent_batches=CONCURRENT_BATCHES)
    async def _embed_batch(self, requests: list[tuple[str, list[str]]]) -> list[Embeddings]:
        self._encoding += 1
        self._embed_batch.set_batch_wait_timeout_s(BUSY_BATCH_WAIT_S)  # type: ignore[attr-defined]
        try:
            return await self._encode_batch(requests)
        finally:
            self._encoding -= 1
            if not self._encoding:
                self._embed_batch.set_batch_wait_timeout_s(0)  # type: ignore[attr-defined]

    async def _encode_batch(self, requests: list[tuple[str, list[str]]]) -> list[Embeddings | Exception]:
        async def encode(group: list[tuple[str, list[str]]]) -> list[Embeddings]:
            model_id = group[0][0]
            encoder: SentenceEncoder = await self._models.get(self._catalog.models[model_id])
            vectors, counts = await run_inference(encoder.encode, [text for _, texts in group for text in texts])
            results, start = [], 0
            for _, texts in group:
                end = start + len(texts)
                results.append(Embeddings(model_id, vectors[start:end], counts[start:end]))
                start = end
            return results

        return await run_in_groups(requests, lambda request: request[0], encode, "embedding")

    def _load(self, entry: ModelEntry, paths: dict[str, str]) -> SentenceEncoder:
        return ENGINES[entry.engine or self.engines[0]](entry, paths, self._device)

    def _conversion(self, entry: ModelEntry) -> str | None:
        return "onnx-fp32" if entry.engine == "onnx" else None
