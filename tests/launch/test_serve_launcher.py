"""A named Ray cluster that does not answer is a clear error within seconds, not an endless retry.

Each test runs the launcher scripts/serve.sh execs (`python -m deployments.launch.serve_launcher`) as a
user's shell would, with Ray's temp dir holding a stale `ray_current_cluster` file. That the README's
serve command starts its own Ray despite such a file is tests/test_deploy_configs.py's serve test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.own_ray  # starts a Ray of its own: runs before the session's application

ROOT = Path(__file__).resolve().parents[2]


def launcher_env(temp_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_TMPDIR": str(temp_dir), "RAY_USAGE_STATS_ENABLED": "0", **extra}


def launch(args: list[str], env: dict[str, str], **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deployments.launch.serve_launcher", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **options)


# (not "auto": Ray then takes any cluster running on the machine, e.g. the test session's own)
@pytest.mark.parametrize("named", ["env", "flag"])
def test_a_named_cluster_that_does_not_answer_is_a_clear_error(stale_temp_dir, named):
    temp_dir, dead = stale_temp_dir
    address = f"127.0.0.1:{dead}"
    args, extra = (["serve_config.cpu.yaml", "--address", address], {}) if named == "flag" else \
        (["serve_config.cpu.yaml"], {"RAY_ADDRESS": address})
    started = time.monotonic()
    result = launch(args, launcher_env(temp_dir, **extra))
    output, _ = result.communicate(timeout=60)
    assert result.returncode == 2, output
    assert time.monotonic() - started < 30
    # Ray resolves 127.0.0.1 to the node's own address, so the host part may read differently
    assert "error: No Ray cluster answers at " in output and f":{dead} (address '{address}')" in output
    assert "unset RAY_ADDRESS and drop --address to serve on an embedded Ray" in output


def test_host_and_port_from_the_environment_replace_the_configs_http_options(tmp_path):
    """Seed 003's HOST and PORT: `serve run` gets a copy of the config with them, nothing else changed."""
    import yaml

    from deployments.launch.serve_launcher import with_http_overrides

    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"http_options": {"host": "127.0.0.1", "port": 8000}, "applications": []}))
    assert with_http_overrides([str(config), "--blocking"], {}) == [str(config), "--blocking"]
    argv = with_http_overrides([str(config), "--blocking"], {"HOST": "0.0.0.0", "PORT": "9100"})
    assert argv[1] == "--blocking" and argv[0] != str(config)
    copied = yaml.safe_load(open(argv[0]).read())
    assert copied == {"http_options": {"host": "0.0.0.0", "port": 9100}, "applications": []}
    with pytest.raises(ValueError, match="PORT must be a port number, not 'http'"):
        with_http_overrides([str(config)], {"PORT": "http"})


def test_serve_mode_sets_rays_haproxy_variables_and_a_bad_mode_is_a_clear_error(tmp_path):
    """Serve's HAProxy mode by default (INFERENCE_SERVE_MODE=proxy: Serve's Python proxy), with replays of
    requests whose ingress died (tests/test_chaos.py kills one under load in that mode); a variable the user
    set is kept."""
    from deployments.launch.serve_launcher import serve_mode_environment

    assert serve_mode_environment({"INFERENCE_SERVE_MODE": "proxy"}) == {}
    assert serve_mode_environment({}) == serve_mode_environment({"INFERENCE_SERVE_MODE": "haproxy"})
    chosen = serve_mode_environment({"RAY_SERVE_HAPROXY_RETRY_ON": "none"})
    assert chosen == {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
                      "RAY_SERVE_HAPROXY_RETRIES": "10"}
    refused = launch(["serve_config.cpu.yaml"], launcher_env(tmp_path, INFERENCE_SERVE_MODE="fast"))
    assert refused.wait(timeout=60) == 2
    assert "error: INFERENCE_SERVE_MODE must be one of haproxy, proxy, not 'fast'" in refused.stdout.read()


@pytest.mark.parametrize("config", ["serve_config.yaml", "serve_config.gpu1.yaml", "serve_config.cpu.yaml"])
def test_a_non_loopback_address_without_a_key_is_refused_unless_said_explicitly(tmp_path, config):
    """Fail closed: the shipped profiles that bind 0.0.0.0 (and HOST=0.0.0.0 with the CPU one) are refused
    within seconds with the settings to use, before any Ray starts; a key, or the explicit setting, lets
    them through (a refusal would say so first)."""
    from deployments.launch.serve_launcher import OpenToTheNetwork, check_bind_is_guarded

    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_") and k not in ("HOST", "PORT")}
    host = {"HOST": "0.0.0.0"} if config == "serve_config.cpu.yaml" else {}
    started = time.monotonic()
    refused = launch([config], {**launcher_env(tmp_path), **env, **host})
    output, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2 and time.monotonic() - started < 30, output
    assert "error: refusing to serve on 0.0.0.0 (not loopback) with no API key" in output
    assert "INFERENCE_API_KEYS" in output and "INFERENCE_ALLOW_OPEN_NETWORK=1" in output
    for allowed in ({"INFERENCE_API_KEYS": "k1"}, {"INFERENCE_ADMIN_API_KEYS": "a1"},
                    {"INFERENCE_ALLOW_OPEN_NETWORK": "1"}, {"HOST": "127.0.0.1"}):
        from deployments.launch.serve_launcher import with_http_overrides

        argv = with_http_overrides([config], {**host, **allowed})
        check_bind_is_guarded(argv, allowed)  # raises if refused
    with pytest.raises(OpenToTheNetwork):
        check_bind_is_guarded(with_http_overrides([config], {**host, "INFERENCE_API_KEYS": " , "}),
                              {"INFERENCE_API_KEYS": " , "})


@pytest.mark.parametrize("fault", ["unschedulable", "failing"])
def test_a_start_that_cannot_finish_says_which_deployment_and_why_and_exits_1(stale_temp_dir, tmp_path, fault):
    """A deployment that can never be scheduled (a resource no node has) ends the start after
    INFERENCE_SCHEDULE_TIMEOUT_SECONDS, and an application that fails to build ends it at once: each names
    what failed with Serve's reason, exits with status 1 and leaves no process behind."""
    import yaml

    from tests.conftest import free_port
    from tests.launch.test_as_shipped import started_by_it

    config = yaml.safe_load((ROOT / "serve_config.cpu.yaml").read_text())
    config["http_options"]["port"] = free_port()
    app = config["applications"][0]
    app["args"]["models"] = ["all-minilm-l6-v2"]
    if fault == "unschedulable":
        app["deployments"][0]["ray_actor_options"]["resources"] = {"a-node-nobody-has": 1}  # the Ingress
        expected = "error: deployment Ingress could not be scheduled for "
    else:
        app["args"]["models"] = ["no-such-model"]
        expected = "error: application inference failed to deploy: "
    (tmp_path / "profile.yaml").write_text(yaml.safe_dump(config))
    temp_dir = stale_temp_dir[0]
    started = time.monotonic()
    # Serve says a replica waits to be scheduled after RAY_SERVE_SLOW_STARTUP_WARNING_S (30 s unless set)
    run = launch([str(tmp_path / "profile.yaml")],
                 launcher_env(temp_dir, INFERENCE_SCHEDULE_TIMEOUT_SECONDS="5", HF_ENDPOINT="http://127.0.0.1:9",
                              RAY_SERVE_SLOW_STARTUP_WARNING_S="5", RAY_SERVE_SLOW_STARTUP_WARNING_PERIOD_S="5"))
    try:
        output, _ = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 1, output[-3000:]
    line = next((line for line in output.splitlines() if expected in line), None)
    assert line is not None, output[-3000:]
    assert ("a-node-nobody-has" in line) if fault == "unschedulable" else ("no-such-model" in line), line
    print(f"{fault}: exit 1 after {time.monotonic() - started:.0f}s: {line[:200]}")
    deadline = time.monotonic() + 15
    while started_by_it(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not started_by_it(temp_dir)
