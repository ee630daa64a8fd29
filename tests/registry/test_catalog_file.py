"""The catalog data file: complete for the seeds, strict, overridable by environment."""

from __future__ import annotations

import pytest
import yaml

from registry import DEFAULT_CATALOG_PATH, CatalogError, UnknownModelError, load_catalog


@pytest.fixture()
def catalog_data():
    return yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())


def write(tmp_path, data) -> str:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_catalog_lists_every_seed_family_and_variant():
    catalog = load_catalog(environ={})
    assert {"htdemucs", "htdemucs_ft", "htdemucs_6s", "mdx_extra"} <= set(catalog.models)
    assert catalog.families["demucs"].default_model == "htdemucs"
    assert catalog.models["htdemucs_6s"].specs.stems == ["drums", "bass", "other", "vocals", "guitar", "piano"]
    for size, vram, recommended in (("small", 4, 10), ("medium", 8, 15), ("large", 16, 10)):
        specs = catalog.variant("musicgen", size).specs
        assert (specs.max_duration_seconds, specs.recommended_duration_seconds) == (30, recommended)
        assert (specs.tokens_per_second, specs.vram_requirement_gb, specs.sample_rate) == (50, vram, 32000)
    assert {m.variant for m in catalog.models.values() if m.family == "whisper"} >= {"tiny", "base", "small", "medium"}
    assert catalog.variant("whisper", "large").hub.repo_id == "openai/whisper-large-v3"
    speecht5 = catalog.resolve("speecht5_tts")
    assert [(c.role, c.repo_id) for c in speecht5.companions] == [
        ("vocoder", "microsoft/speecht5_hifigan"), ("speaker-embeddings", "Matthijs/cmu-arctic-xvectors")]
    assert catalog.resolve("bark_tts").hub.repo_id == "suno/bark"
    assert catalog.resolve("sentence-transformers/all-MiniLM-L6-v2").specs.dimensions == 384
    assert catalog.default_model("chat").hub.repo_id == "Qwen/Qwen2.5-0.5B-Instruct"
    assert catalog.resolve("resnet50").family == "image-classifier"
    for entry in catalog.models.values():
        assert entry.hub.revision and entry.capabilities, entry.id


def test_unknown_model_names_the_known_ones():
    catalog = load_catalog(environ={})
    with pytest.raises(UnknownModelError, match=r"Model 'nope' not found for task 'text-embedding'\. "
                                                r"Known models: all-minilm-l6-v2, bge-small-en-v1.5"):
        catalog.resolve("nope", task="text-embedding")


def test_task_aliases_and_seed_001_fields():
    catalog = load_catalog(environ={})
    assert [catalog.task_named(name) for name in ("text-generation", "Chat", "speech", "")] == ["chat", "chat",
                                                                                               None, None]
    speech = catalog.models["speecht5-tts"]
    assert (speech.quality, speech.speed, speech.experimental) == ("very-high", "medium", False)
    assert "beginners" in speech.recommended_for and catalog.models["ltx-video"].experimental


def test_seed_001_fields_are_checked(tmp_path, catalog_data):
    catalog_data["models"][0]["quality"] = "amazing"
    with pytest.raises(CatalogError, match=r"entry 'htdemucs' field 'quality'"):
        load_catalog(write(tmp_path, catalog_data), environ={})


def test_limit_overridden_by_environment():
    catalog = load_catalog(environ={"CATALOG__MUSICGEN_SMALL__MAX_DURATION_SECONDS": "60"})
    assert catalog.models["musicgen-small"].specs.max_duration_seconds == 60
    assert catalog.models["musicgen-medium"].specs.max_duration_seconds == 30


def test_bad_override_names_entry_and_field():
    with pytest.raises(CatalogError, match=r"entry 'musicgen-small' field 'specs.max_duration_seconds'"):
        load_catalog(environ={"CATALOG__MUSICGEN_SMALL__MAX_DURATION_SECONDS": "-5"})
    with pytest.raises(CatalogError, match=r"'max_durations' is not a model spec"):
        load_catalog(environ={"CATALOG__MUSICGEN_SMALL__MAX_DURATIONS": "60"})
    with pytest.raises(CatalogError, match=r"name no catalog entry: CATALOG__MUSICGEN_HUGE__"):
        load_catalog(environ={"CATALOG__MUSICGEN_HUGE__MAX_DURATION_SECONDS": "60"})


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: d["models"][0]["hub"].update(repo_id="no-owner"),
         r"entry 'htdemucs' field 'hub.repo_id': Value error, repo_id must look like 'owner/name'"),
        (lambda d: d["models"][4]["specs"].update(sample_rate="fast"),
         r"entry 'musicgen-small' field 'specs.sample_rate': Input should be a valid integer"),
        (lambda d: d["models"][4].update(colour="blue"),
         r"entry 'musicgen-small' field 'colour': Extra inputs are not permitted"),
        (lambda d: d["models"][1].update(family="demux"),
         r"entry 'htdemucs_ft' field 'family': unknown family 'demux'"),
        (lambda d: d["families"]["musicgen"].update(default_model="htdemucs"),
         r"family 'musicgen' field 'default_model': 'htdemucs' is not a model of this family"),
        (lambda d: d["models"].append(dict(d["models"][0])),
         r"entry 'htdemucs' field 'id': duplicate id"),
        (lambda d: d["models"][5].update(aliases=["musicgen-small"]),
         r"entry 'musicgen-medium' field 'aliases': 'musicgen-small' is already used"),
        (lambda d: d["models"][5].update(hub={"repo_id": "facebook/musicgen-small"}),
         r"entry 'musicgen-medium' field 'hub.repo_id': 'facebook/musicgen-small' is already used"),
    ],
)
def test_broken_catalog_fails_naming_entry_and_field(tmp_path, catalog_data, break_it, message):
    break_it(catalog_data)
    with pytest.raises(CatalogError, match=message):
        load_catalog(write(tmp_path, catalog_data), environ={})


def test_a_catalog_entry_may_name_an_s3_prefix_as_its_source(tmp_path, catalog_data):
    catalog_data["models"][0]["hub"] = {"repo_id": "s3://models-bucket/demucs/htdemucs"}
    entry = load_catalog(write(tmp_path, catalog_data), environ={}).models["htdemucs"]
    assert entry.hub.is_s3 and entry.hub.repo_id == "s3://models-bucket/demucs/htdemucs"
    catalog_data["models"][0]["hub"] = {"repo_id": "s3://"}
    with pytest.raises(CatalogError, match=r"'owner/name' or 's3://bucket/prefix'"):
        load_catalog(write(tmp_path, catalog_data), environ={})
