"""A local Hugging Face Hub for tests: serves model folders over the Hub's HTTP API on 127.0.0.1."""

from tests.hub.server import TestHub

__all__ = ["TestHub"]
