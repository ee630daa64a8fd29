"""EmbeddingDeployment: sentence embeddings with dynamic batching across requests."""

from __future__ import annotations

import asyncio

from ray import serve

from deployments.families.embedding.protocol import Embeddings
from deployments.serving.model_loading import FamilyDeployment
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
    _encoding = 0  # batches encoding now

    async def embed(self, model: str, texts: list[str]) -> Embeddings:
        """Embed `texts` with catalog model `model`; requests arriving together share one forward pass."""
        entry = self._entry(model, "text-embedding")
        # Loaded before joining a batch: a failed load fails only its own requests, and a batch
        # never waits on a download.
        await self._models.get(entry)
        return await self._embed_batch((entry.id, texts))

    async def run_job(self, job_id: str) -> str:
        """Embeddings as a queued job (seed 004's /api/v1/run): the vectors become the job's output."""
        return await self._jobs.run(job_id, self._embed_job)

    async def _embed_job(self, context: JobContext) -> dict:
        result = await self.embed(context.job.model, context.job.input["texts"])
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

    async def _encode_batch(self, requests: list[tuple[str, list[str]]]) -> list[Embeddings]:
        results: list[Embeddings | None] = [None] * len(requests)
        for model_id in dict.fromkeys(model for model, _ in requests):
            indices = [i for i, (model, _) in enumerate(requests) if model == model_id]
            encoder = await self._models.get(self._catalog.models[model_id])
            texts = [text for i in indices for text in requests[i][1]]
            vectors, counts = await asyncio.to_thread(_encode, encoder, texts)
            start = 0
            for i in indices:
                n = len(requests[i][1])
                results[i] = Embeddings(model_id, vectors[start:start + n], counts[start:start + n])
                start += n
        return results

    def _load(self, entry: ModelEntry, paths: dict[str, str]):
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(paths["weights"], device=self._device, local_files_only=True)
        if entry.specs.max_input_tokens:
            encoder.max_seq_length = entry.specs.max_input_tokens
        return encoder


def _encode(encoder, texts: list[str]) -> tuple[list[list[float]], list[int]]:
    """Normalized vectors (as OpenAI's are) and the number of tokens read per text."""
    vectors = encoder.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    token_ids = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_seq_length)["input_ids"]
    return vectors.tolist(), [len(ids) for ids in token_ids]
