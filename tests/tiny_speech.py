"""Tiny random-weight SpeechT5 + HiFi-GAN + speaker embeddings, and Bark with voice presets, saved with the libraries' own save code and served by the test hub."""

from __future__ import annotations

from pathlib import Path

# Options the test app deploys this family's deployment with (conftest.deploy_inference_app).
DEPLOYMENT_OPTIONS: dict = {}


def add_repos(hub, folder: Path) -> None:
    """Build the tiny models into `folder` and add them to the test hub under the catalog's repo ids."""
