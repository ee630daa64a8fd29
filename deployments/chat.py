"""ChatDeployment: chat completion with a causal LM and its tokenizer's chat template. (stub: being written)"""

from __future__ import annotations

from ray import serve

from deployments.model_loading import FamilyDeployment
from registry import ModelEntry


@serve.deployment(max_ongoing_requests=64, health_check_period_s=5)
class ChatDeployment(FamilyDeployment):
    def _load(self, entry: ModelEntry, paths: dict[str, str]):
        raise NotImplementedError
