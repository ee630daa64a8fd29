"""What scripts/serve.sh runs: Serve with a config file, on an embedded Ray unless the user names a cluster,
brought up in stages that answer 503 + Retry-After until the service runs and print the progress
(deployments/launch/serve_startup.py); a deployment that fails or cannot be scheduled ends it with status 1.

Left alone, `serve run` joins whatever cluster Ray's temp dir names (`ray_current_cluster`), and a
`ray start` cluster that died uncleanly leaves that file behind: `serve run` then retries the dead
GCS for ever. Here no address means `--address local` (a fresh embedded Ray), and a named address
(`RAY_ADDRESS` or `--address`) that nothing answers on is a clear error within seconds.

    python -m deployments.launch.serve_launcher serve_config.cpu.yaml [--address host:port]

HOST and PORT (seed 003's settings) in the environment replace the config file's `http_options`
host and port: the file is copied with them changed, as Serve reads both only from the file.

It refuses to serve on an address other than loopback while no API key is configured
(INFERENCE_API_KEYS / INFERENCE_ADMIN_API_KEYS, in the environment or the config's env_vars), unless
INFERENCE_ALLOW_OPEN_NETWORK=1 says that something in front of it authenticates.

Serve runs in its throughput-optimized mode (HAProxy in front of the ingress replicas, gRPC between
replicas), with HAProxy replaying a request whose ingress replica died before answering on another one
(see serve_mode_environment); INFERENCE_SERVE_MODE=proxy runs Serve's Python HTTP proxy instead.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

CONNECT_TIMEOUT_S = 3.0
# a deployment whose replicas wait this long for resources ends the start (no autoscaler adds a node to
# an embedded Ray); a cluster that scales up slower can raise it
SCHEDULE_SETTING = "INFERENCE_SCHEDULE_TIMEOUT_SECONDS"
SCHEDULE_BOUND_S = 120.0
STOP_STEP_S = 10.0  # Serve's shutdown at most this long after Ctrl-C; then every process it started ends
SERVE_MODES = ("haproxy", "proxy")  # the first is the default
# Serve's throughput-optimized mode (bench/serving_path.py: 1.85x a hand-rolled FastAPI server's throughput at
# 16 clients where the Python proxy gets 0.99x, and half its latency).
# HAProxy retries only what never got an answer: a refused connection, or one closed with no response
# (the ingress replica died); an error status from the service is the service's answer and is not replayed.
# Ten retries, not HAProxy's 3: until its checks mark the dead replica down, leastconn keeps picking it
# (it holds no connections), and on a busy box 3 replays a second apart all met it (a 500 in CI).
HAPROXY_MODE_ENV = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
                    "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response junk-response",
                    "RAY_SERVE_HAPROXY_RETRIES": "10"}


class NoCluster(RuntimeError):
    """The named Ray cluster does not answer."""


class OpenToTheNetwork(RuntimeError):
    """A non-loopback address with no API key: anyone who reaches the port could use every route."""


KEY_SETTINGS = ("INFERENCE_API_KEYS", "INFERENCE_ADMIN_API_KEYS")
OPEN_SETTING = "INFERENCE_ALLOW_OPEN_NETWORK"


def check_bind_is_guarded(argv: list[str], environ: dict[str, str]) -> None:
    """Raise OpenToTheNetwork when the config file serves beyond loopback and no key is configured."""
    import ipaddress

    import yaml

    position = next((i for i, arg in enumerate(argv) if arg.endswith((".yaml", ".yml"))), None)
    if position is None:
        return
    with open(argv[position]) as file:
        config = yaml.safe_load(file) or {}
    host = str((config.get("http_options") or {}).get("host") or "127.0.0.1")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    in_config = [app.get("runtime_env", {}).get("env_vars", {}) for app in config.get("applications") or []]
    keyed = any(str(env.get(name) or "").strip(", ") for env in [environ, *in_config] for name in KEY_SETTINGS)
    if loopback or keyed or environ.get(OPEN_SETTING, "").lower() in ("1", "true", "yes"):
        return
    raise OpenToTheNetwork(
        f"refusing to serve on {host} (not loopback) with no API key: anyone who reaches the port could use "
        f"every route. Set INFERENCE_API_KEYS (and INFERENCE_ADMIN_API_KEYS), or HOST=127.0.0.1, or "
        f"{OPEN_SETTING}=1 if something in front of the service authenticates (see docs/deploying.md).")


def named_address(argv: list[str]) -> str | None:
    """The cluster address the user named: `--address`/`-a` on the command line, else RAY_ADDRESS."""
    for i, arg in enumerate(argv):
        if arg in ("--address", "-a") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--address="):
            return arg.split("=", 1)[1]
    return os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise NoCluster unless a GCS answers at `address` (host:port; "auto" is looked up as Ray does)."""
    from ray._private.services import canonicalize_bootstrap_address

    if address.startswith("ray://") or address == "local":
        return  # Ray Client's own handshake reports a dead server; "local" starts one
    try:
        resolved = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as error:
        raise NoCluster(f"No Ray cluster found for address '{address}': {error}") from None
    if resolved is None:
        return
    host, _, port = resolved.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise NoCluster(f"No Ray cluster answers at {resolved} (address '{address}'): {error}. Start it, "
                        "or unset RAY_ADDRESS and drop --address to serve on an embedded Ray.") from None


def with_http_overrides(argv: list[str], environ: dict[str, str]) -> list[str]:
    """`argv` with its config file (the first .yaml argument) swapped for a copy whose http_options take
    HOST and PORT from `environ`; unchanged when neither is set."""
    overrides: dict[str, str | int] = {key: environ[name] for key, name in (("host", "HOST"), ("port", "PORT"))
                                       if environ.get(name)}
    position = next((i for i, arg in enumerate(argv) if arg.endswith((".yaml", ".yml"))), None)
    if not overrides or position is None:
        return argv
    import tempfile

    import yaml

    with open(argv[position]) as file:
        config = yaml.safe_load(file)
    if "port" in overrides:
        port = str(overrides["port"])
        if not port.isdigit():
            raise ValueError(f"PORT must be a port number, not '{port}'")
        overrides["port"] = int(port)
    config["http_options"] = {**(config.get("http_options") or {}), **overrides}
    copy = tempfile.NamedTemporaryFile("w", prefix="serve-config-", suffix=".yaml", delete=False)
    with copy:
        yaml.safe_dump(config, copy, sort_keys=False)
    return [*argv[:position], copy.name, *argv[position + 1:]]


def serve_mode_environment(environ: dict[str, str]) -> dict[str, str]:
    """The Ray variables INFERENCE_SERVE_MODE asks for (ones the user set already are kept); they must be
    in the environment of the process that starts Ray (here `serve run`, on a cluster `ray start`)."""
    mode = environ.get("INFERENCE_SERVE_MODE") or SERVE_MODES[0]
    if mode not in SERVE_MODES:
        raise ValueError(f"INFERENCE_SERVE_MODE must be one of {', '.join(SERVE_MODES)}, not '{mode}'")
    wanted = HAPROXY_MODE_ENV if mode == "haproxy" else {}
    return {name: value for name, value in wanted.items() if name not in environ}


def parse_args(argv: list[str]) -> tuple[str, str]:
    """(config file, cluster address) from the launcher's arguments; "local" when no cluster is named
    (a fresh embedded Ray), else the named address once something answers there."""
    config = next((arg for arg in argv if arg.endswith((".yaml", ".yml"))), None)
    if config is None:
        raise ValueError("name a Serve config file (serve_config.cpu.yaml, serve_config.gpu1.yaml, ...)")
    address = named_address(argv)
    rest = [arg for i, arg in enumerate(argv) if arg != config and arg not in ("--address", "-a", address)
            and not arg.startswith("--address=")]
    if rest:
        raise ValueError(f"unknown arguments {' '.join(rest)}: the launcher takes a config file and --address")
    if address is None:
        return config, "local"
    check_reachable(address)
    return config, address


def main(argv: list[str]) -> int:
    import yaml

    from deployments.launch.app_check import AppCheck
    from deployments.launch.serve_startup import Descendants, StartFailed, running, start, stop

    try:
        os.environ.update(serve_mode_environment(dict(os.environ)))  # before Ray reads its constants
        argv = with_http_overrides(argv, dict(os.environ))
        check_bind_is_guarded(argv, dict(os.environ))
        config_path, address = parse_args(argv)
        schedule_bound_s = float(os.environ.get(SCHEDULE_SETTING) or SCHEDULE_BOUND_S)
    except (NoCluster, OpenToTheNetwork, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # SIGINT back to its default: a shell starts background jobs with it ignored, and Ctrl-C must stop
    # Serve and its embedded Ray.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with open(config_path) as file:
        config = yaml.safe_load(file)
    http = config.get("http_options") or {}
    url = f"http://{http.get('host') or '127.0.0.1'}:{http.get('port') or 8000}"

    def say(line: str) -> None:
        print(f"[serve.sh] {line}", flush=True)

    started = Descendants()
    check = AppCheck(config)  # builds each application beside Ray's start: a bad profile fails in seconds
    try:
        say(f"starting {config_path} on {'an embedded Ray' if address == 'local' else address}")
        watch = start(config, address, schedule_bound_s, say, before_apps=check.wait)
        say(f"serving on {url} (models still starting answer 503 + Retry-After)")
        watch.wait_until(lambda seen: all(map(running, seen.values())))
        say("ready: every deployment runs. Ctrl-C stops the service.")
        while True:
            time.sleep(3600)
    except StartFailed as failure:
        say(f"error: {failure}")
        code = 1
    except KeyboardInterrupt:
        say("stopping")
        code = 0
    check.stop()
    # a start that failed on an embedded Ray serves nothing to drain: its processes just end
    stop(0.0 if code == 1 and address == "local" else STOP_STEP_S, started, say)
    say("stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # not Ray's exit hook: it would wait on the Ray just stopped


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
