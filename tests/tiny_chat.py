"""Tiny random-weight chat models saved with the libraries' own save code and served by the test hub. (stub)"""

from __future__ import annotations

# Options the test app deploys this family's deployment with (conftest.deploy_inference_app).
DEPLOYMENT_OPTIONS: dict = {}


def add_repos(hub, folder) -> None:
    """Build the tiny models into subfolders of `folder` and serve them under the catalog's repo ids."""
