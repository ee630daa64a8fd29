"""serve_config.yaml, serve_config.cpu.yaml and cluster.yaml are valid for Ray and match the app (the
README's serve command runs the CPU profile as shipped in tests/launch/test_as_shipped.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


class StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a config with one is a mistake."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"repeated keys {repeated}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load(name: str) -> dict:
    return yaml.load((ROOT / name).read_text(), Loader=StrictLoader)


CONFIGS = ["serve_config.yaml", "serve_config.cpu.yaml", "serve_config.gpu1.yaml"]


def plans_of(config: dict):
    from deployments.app import AppArgs, plan_app
    from registry import load_catalog

    return plan_app(load_catalog(), AppArgs.model_validate(config["applications"][0]["args"]))


@pytest.mark.parametrize("config_file", CONFIGS)
def test_serve_config_is_valid_for_the_app(config_file):
    from ray.serve.schema import ServeDeploySchema

    from deployments.app import FAMILY_DEPLOYMENTS, AppArgs, build_app
    from registry import load_catalog

    raw = load(config_file)
    config = ServeDeploySchema.model_validate(raw)
    (app,) = config.applications
    assert app.import_path == "deployments.app:build_app" and app.route_prefix == "/"
    assert build_app(AppArgs.model_validate(app.args)) is not None
    plans = {p.name: p for p in plans_of(raw)}
    catalog = load_catalog()
    # one deployment per catalog model, named by its id; a pool per family for run-time models
    assert {p.model_id for p in plans.values() if p.model_id} <= set(catalog.models)
    assert all(name == p.model_id for name, p in plans.items() if p.model_id)
    assert {f"{kind}-pool" for kind in FAMILY_DEPLOYMENTS} <= set(plans)
    # Serve's overrides by name reach deployments that exist
    assert {d.name for d in app.deployments} <= {"Ingress", *plans}
    warm = {name for name, p in plans.items() if p.min_replicas}
    expected = app.args.get("warm_models") or {task.default_model for task in catalog.tasks.values()}
    assert warm == set(expected) & set(plans)  # the profile's warm list, else every task default
    for plan in plans.values():
        family = FAMILY_DEPLOYMENTS[plan.kind].func_or_class
        user_config = plan.options.get("user_config")
        if user_config is not None:  # what reconfigure() will be given
            family.config_class.model_validate(user_config)
        batch = (user_config or {}).get("max_batch_size", 1)
        assert plan.options["max_ongoing_requests"] >= 2 * batch  # else @serve.batch never fills
        scaling = plan.options["autoscaling_config"]
        assert scaling["min_replicas"] == (1 if plan.name in warm else 0) <= scaling["max_replicas"]


@pytest.mark.parametrize("config_file", ["serve_config.yaml", "serve_config.gpu1.yaml"])
def test_gpu_profiles_give_each_model_its_fraction_and_fit_the_warm_models(config_file):
    config = load(config_file)
    args = config["applications"][0]["args"]
    plans = plans_of(config)
    for plan in plans:
        fraction = plan.options["ray_actor_options"]["num_gpus"]
        assert 0 < fraction <= 1 and fraction >= plan.vram_gb / args["gpu_memory_gb"] - 1e-9, plan.name
    small = next(p for p in plans if p.name == "musicgen-small")
    assert small.options["ray_actor_options"]["num_gpus"] == 0.17  # 4 GB of 24, rounded up
    warm_fractions = sum(p.options["ray_actor_options"]["num_gpus"] for p in plans if p.min_replicas)
    assert warm_fractions <= args["gpus"]


def test_cpu_profile_is_local_and_gpu_free():
    config = load("serve_config.cpu.yaml")
    assert config["http_options"] == {"host": "127.0.0.1", "port": 8000}
    assert all(d["ray_actor_options"].get("num_gpus", 0) == 0 for d in config["applications"][0]["deployments"])
    assert all(p.options["ray_actor_options"]["num_gpus"] == 0 for p in plans_of(config))


def test_builder_refuses_warm_models_that_cannot_fit_the_declared_gpu():
    from deployments.app import AppArgs, build_app

    too_big = ["musicgen-large", "mistral-7b-instruct", "mistral-7b-instruct-v0.1", "stable-diffusion-3-medium",
               "ltx-video"]
    with pytest.raises(ValueError, match=r"min replicas need 29 GB of GPU memory; the profile declares 24 GB"):
        build_app(AppArgs(gpu_memory_gb=24, exclude_models=too_big))  # every task default warm: 13 + 4 + 4 + 8 GB
    with pytest.raises(ValueError, match=r"more memory than one GPU .*: musicgen-large \(16 GB\)"):
        build_app(AppArgs(gpu_memory_gb=12))
    with pytest.raises(ValueError, match="unknown model or family 'musicgen-xl'"):
        build_app(AppArgs(models=["musicgen-xl"]))
    assert build_app(AppArgs(gpu_memory_gb=12, warm_models=["all-minilm-l6-v2"],
                             exclude_models=too_big)) is not None


@pytest.mark.parametrize("config_file, box_cpus", [("serve_config.cpu.yaml", 2), ("serve_config.gpu1.yaml", 4),
                                                   ("serve_config.yaml", None)])
def test_each_profile_fits_the_cpus_of_the_box_it_is_for(config_file, box_cpus):
    """The CPU profile on the 2 CPUs Ray counts here, the one-GPU profile on a 4-vCPU GPU host (g5.xlarge),
    the cluster profile on the CPUs it declares: the warm replicas and the ingress (with the profile's own
    `deployments:` overrides) are all scheduled at start."""
    from deployments.app import AppArgs, compose_app
    from deployments.settings import ServiceSettings
    from registry import load_catalog

    app = load(config_file)["applications"][0]
    overrides = {d["name"]: {k: v for k, v in d.items() if k != "name"} for d in app.get("deployments", [])}
    args = AppArgs.model_validate({**app["args"], **({"cpus": box_cpus} if box_cpus else {})})
    assert compose_app(load_catalog(), ServiceSettings(), args, overrides) is not None


def test_builder_refuses_warm_replicas_that_cannot_fit_the_cpus():
    """What the CPU profile used to be (0.2 CPU per model, 12 warm, 2 CPUs): the ingress was never scheduled
    and the service never answered. Now the build fails, naming the numbers."""
    from deployments.app import AppArgs, build_app

    with pytest.raises(ValueError, match=r"reserve 2\.6 CPUs, and Ray counts 2 here \(htdemucs 0\.2, .*"
                                         r"Ingress 0\.2\); set num_cpus: 0 for the models"):
        build_app(AppArgs(num_cpus=0.2, cpus=2))
    assert build_app(AppArgs(num_cpus=0, cpus=2)) is not None


def test_cluster_yaml_is_a_valid_ray_cluster_config():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    cluster = load("cluster.yaml")
    jsonschema.validate(cluster, schema)
    workers = {n: t for n, t in cluster["available_node_types"].items() if n != cluster["head_node_type"]}
    assert workers and all(t["min_workers"] >= 1 for t in workers.values())
    assert any("scripts/install.sh" in command for command in cluster["setup_commands"])


def test_engines_come_from_the_catalog_then_the_profile_and_unknown_ones_are_refused():
    from deployments.app import with_engines
    from registry import load_catalog

    catalog = load_catalog()
    cpu = with_engines(catalog, load("serve_config.cpu.yaml")["applications"][0]["args"]["engines"])
    assert {cpu.models[m].engine for m in ("whisper-tiny", "whisper-large-v3")} == {"ctranslate2"}
    assert (cpu.models["all-minilm-l6-v2"].engine, cpu.models["musicgen-small"].engine) == ("onnx", None)
    mixed = with_engines(catalog, {"transcription": "ctranslate2", "whisper-tiny": "transformers"})
    assert (mixed.models["whisper-tiny"].engine, mixed.models["whisper-base"].engine) == ("transformers", "ctranslate2")
    assert with_engines(catalog, {}).models["all-minilm-l6-v2"].engine == "sentence-transformers"  # the default
    with pytest.raises(ValueError, match="Model 'whisper-base' cannot run on engine 'onnx'; its family's engines: "
                                         "transformers, ctranslate2"):
        with_engines(catalog, {"whisper-base": "onnx"})
    with pytest.raises(ValueError, match=r"unknown families or models \['whisper-xl'\]"):
        with_engines(catalog, {"whisper-xl": "ctranslate2"})
