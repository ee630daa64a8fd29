"""What the ingress may know of embeddings: the vectors and token counts a batch of texts comes back as."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Embeddings:
    """Vectors for one request's texts, in order, with the tokens each text was read as."""

    model: str
    vectors: list[list[float]]
    token_counts: list[int]

    @property
    def dimensions(self) -> int:
        return len(self.vectors[0]) if self.vectors else 0
