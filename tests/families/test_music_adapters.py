"""An adapter that cannot be applied is refused with a reason, and the replica's plain music stays as
it was. A copy of the application deploys only the music family, with a catalog that adds an adapter
whose weights do not fit its base model (transformers fails half-way through loading it)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from deployments.families.music.adapters import installed_support_problem, support_problem
from tests.families.test_music import decode, music
from tests.tiny_musicgen import MISFIT_ADAPTER


@pytest.fixture(scope="module")
def adapters_app(service):
    from ray import serve

    from deployments.app import compose_app
    from deployments.settings import ServiceSettings
    from registry import AdapterEntry, load_catalog
    from tests.conftest import tiny_profile

    adapter_id, repo_id, _, _ = MISFIT_ADAPTER
    catalog = load_catalog()
    misfit = AdapterEntry.model_validate({"id": adapter_id, "name": "Misfit", "base_model": "musicgen-small",
                                          "hub": {"repo_id": repo_id}})
    catalog = catalog.model_copy(update={"adapters": {**catalog.adapters, adapter_id: misfit}})
    app = compose_app(catalog, ServiceSettings(), tiny_profile(models=["musicgen-small"], runtime_pools=False))
    serve.run(app, name="adapters", route_prefix="/adapters")
    with httpx.Client(base_url=f"{service}/adapters", timeout=120) as http:
        yield http
    serve.delete("adapters")


def test_an_adapter_that_does_not_fit_gets_a_503_and_plain_music_is_unchanged(adapters_app):
    base = decode(music(adapters_app, seed=3))[0]
    for _ in range(2):  # the same answer again: no 500 once the replica has seen the failure
        refused = music(adapters_app, seed=3, adapter="misfit-small")
        assert refused.status_code == 503, refused.text
        body = refused.json()
        assert body["error_code"] == "MODEL_UNAVAILABLE" and body["success"] is False
        assert body["message"].startswith("Adapter 'misfit-small' could not be applied: RuntimeError")
        assert np.array_equal(decode(music(adapters_app, seed=3))[0], base)  # the base model is untouched
    if installed_support_problem() is None:  # a good adapter still applies on the same replica
        adapted = decode(music(adapters_app, seed=3, adapter="lofi-small"))[0]
        assert np.abs(adapted - base).max() > 0.05
        assert np.array_equal(decode(music(adapters_app, seed=3))[0], base)


def test_adapters_follow_the_installed_libraries(client):
    """With peft older than transformers' floor, an adapter is a 503 naming both versions and plain
    music keeps working; otherwise it applies. Either way, never a 500."""
    reply = music(client, seed=4, adapter="lofi-small")
    problem = installed_support_problem()
    if problem is None:
        assert reply.status_code == 200, reply.text
    else:
        assert reply.status_code == 503 and reply.json()["message"] == problem
    assert decode(music(client, seed=4))[1] == 32000


@pytest.mark.parametrize(("installed", "needed", "problem"), [
    ("0.21.2", "0.22.0", "LoRA adapters need peft >= 0.22.0; installed 0.21.2"),
    (None, "0.22.0", "LoRA adapters need the peft package, which is not installed"),
    ("0.22.0", "0.22.0", None),
    ("0.21.2", None, None),
])
def test_the_support_check_names_the_versions(installed, needed, problem):
    assert support_problem(installed, needed) == problem
