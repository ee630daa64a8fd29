"""The baseline of bench/serving_path.py: what a user would hand-roll instead of this service, one
FastAPI app in one uvicorn process serving one sentence-transformers model, no batching.

    .venv/bin/python bench/handrolled_embedding.py MODEL_DIR PORT
"""

from __future__ import annotations

import sys
import time

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(sys.argv[1], device="cpu")
app = FastAPI()


class EmbeddingRequest(BaseModel):
    text: str
    model: str | None = None


@app.post("/api/embedding")
def embed(body: EmbeddingRequest) -> dict:
    started = time.perf_counter()
    vector = model.encode([body.text], normalize_embeddings=True)[0]
    return {"success": True, "model": "all-minilm-l6-v2", "dimensions": len(vector), "embedding": vector.tolist(),
            "processing_time": round(time.perf_counter() - started, 4)}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
