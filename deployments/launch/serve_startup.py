"""How scripts/serve.sh brings a Serve config up: in stages, so no request is held while it starts, and with
its progress on the terminal.

Serve publishes an application's route when the application is deployed, before its ingress replica runs,
and its proxy holds every request for that route until a replica is up (tens of seconds on a 2-core box
while a dozen models import torch). A route that moves to an application
whose replica already runs holds nothing, so, for each application with a route:
1. a starting gate (deployments/launch/starting_gate.py) is deployed alone with no route (until a route exists,
   Serve's proxy answers 404 at once), then moved to the route; it answers every request at once with
   503, Retry-After and how far the start has got;
2. the application is deployed beside it with no route;
3. once the application's Ingress runs, the config as written is deployed: the route moves to the ingress
   and the gate goes.
One line per change says how many deployments are ready and which is waited for. A failed deployment, or one
that cannot be scheduled for `schedule_bound_s`, raises StartFailed naming it and Serve's reason.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

INGRESS = "Ingress"
GATE_SUFFIX = "-starting"
POLL_S = 1.0
CONTROL_PROCESSES = ("gcs_server", "raylet")
LINGER_S = 3.0  # after Ray's shutdown, a process it left gets this long to end on SIGTERM, then SIGKILL
NOT_SCHEDULED = "to be scheduled"  # in Serve's message for replicas that wait for resources


class StartFailed(RuntimeError):
    """A deployment failed, or cannot be scheduled on this cluster."""


def staged_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The configs to deploy in turn (see the module docstring); the last is `config` itself."""
    routed = [app for app in config.get("applications") or [] if app.get("route_prefix", "/") is not None]
    gates = [{"name": app["name"] + GATE_SUFFIX, "route_prefix": app.get("route_prefix", "/"),
              "import_path": "deployments.launch.starting_gate:build", "args": {"app_name": app["name"]}}
             for app in routed]
    return [{**config, "applications": unrouted(gates)}, {**config, "applications": gates},
            {**config, "applications": [*gates, *unrouted(config.get("applications") or [])]}, config]


def unrouted(apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The applications with no route: their replicas start while no request can reach them."""
    return [{**copy.deepcopy(app), "route_prefix": None} for app in apps]


def reason(message: str | None) -> str:
    """Serve's message in one line: a traceback's last line (the exception), else the message."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if len(lines) > 1 and any(line.startswith("Traceback") for line in lines):
        return f"{lines[-1]} (the whole traceback is above)"
    return " ".join(lines) or "no message"


def progress_line(app_name: str, app: Any) -> str:
    """'inference: 9/31 deployments ready; waiting for whisper-base (UPDATING: ...)'."""
    states = app.deployments if app is not None else {}
    waiting = [(name, state) for name, state in sorted(states.items()) if state.status.value != "HEALTHY"]
    line = f"{app_name}: {len(states) - len(waiting)}/{len(states)} deployments ready"
    if waiting:
        name, state = next(((n, s) for n, s in waiting if n == INGRESS), waiting[0])
        reason = f": {state.message.splitlines()[0][:160]}" if state.message else ""
        line += f"; waiting for {name} ({state.status.value}{reason})"
    return line


class StartWatch:
    """Reads serve.status() for the applications being started; raises StartFailed on a failure."""

    def __init__(self, app_names: list[str], schedule_bound_s: float, say: Callable[[str], None] = print):
        self.app_names = app_names
        self.schedule_bound_s = schedule_bound_s
        self.say = say
        self._last: dict[str, str] = {}
        self._unscheduled_since: dict[tuple[str, str], float] = {}

    def check(self) -> dict[str, Any]:
        """Each application's status overview (None while Serve has not seen it); says what changed."""
        from ray import serve

        apps = serve.status().applications
        now = time.monotonic()
        for name in self.app_names:
            app = apps.get(name)
            if app is not None and app.status.value == "DEPLOY_FAILED":
                self.say(app.message)
                raise StartFailed(f"application {name} failed to deploy: {reason(app.message)}")
            for deployment, state in (app.deployments if app is not None else {}).items():
                if state.status.value in ("DEPLOY_FAILED", "UNHEALTHY"):
                    self.say(state.message)
                    raise StartFailed(f"deployment {deployment} is {state.status.value}: {reason(state.message)}")
                key = (name, deployment)
                if NOT_SCHEDULED in (state.message or ""):
                    since = self._unscheduled_since.setdefault(key, now)
                    if now - since > self.schedule_bound_s:
                        raise StartFailed(f"deployment {deployment} could not be scheduled for "
                                          f"{now - since:.0f}s: {state.message}")
                else:
                    self._unscheduled_since.pop(key, None)
            line = progress_line(name, app)
            if self._last.get(name) != line:
                self.say(line)
                self._last[name] = line
        return {name: apps.get(name) for name in self.app_names}

    def wait_until(self, done: Callable[[dict[str, Any]], bool]) -> None:
        while not done(self.check()):
            time.sleep(POLL_S)


def ingress_runs(app: Any) -> bool:
    return app is not None and INGRESS in app.deployments and app.deployments[INGRESS].status.value == "HEALTHY"


def running(app: Any) -> bool:
    return app is not None and app.status.value == "RUNNING"


def start(config: dict[str, Any], address: str, schedule_bound_s: float,
          say: Callable[[str], None] = print, before_apps: Callable[[], None] = lambda: None) -> StartWatch:
    """Start Serve on the cluster at `address` ("local": an embedded Ray) and bring `config` up in stages.
    Returns once every application's ingress serves at its route (its models may still be starting: the
    returned watch follows them); raises StartFailed (also from `before_apps`, called before the
    applications are deployed)."""
    import ray
    from ray.serve._private import api as serve_api
    from ray.serve._private.constants import SERVE_NAMESPACE
    from ray.serve.config import gRPCOptions
    from ray.serve.schema import ServeDeploySchema

    stages = [ServeDeploySchema.model_validate(stage) for stage in staged_configs(config)]
    final = stages[-1]
    ray.init(address=address, namespace=SERVE_NAMESPACE)
    client = serve_api.serve_start(http_options=final.http_options.model_dump(),
                                   proxy_location=final.proxy_location,
                                   grpc_options=gRPCOptions(**final.grpc_options.model_dump()),
                                   controller_options=final.controller_options)
    gates = StartWatch([app.name for app in stages[0].applications], schedule_bound_s, lambda line: None)
    for stage in stages[:2]:
        client.deploy_apps(stage, _blocking=False)
        gates.wait_until(lambda seen: all(map(running, seen.values())))
    say("answering 503 + Retry-After until the service runs")
    before_apps()
    client.deploy_apps(stages[2], _blocking=False)
    watch = StartWatch([app.name for app in final.applications], schedule_bound_s, say)
    watch.wait_until(lambda seen: all(map(ingress_runs, seen.values())))
    client.deploy_apps(final, _blocking=False)
    return watch


class Descendants:
    """The processes this one started, directly or not, noted every `period_s` by a daemon thread: after a
    Ctrl-C to the whole process group the raylet may die before its agents, which are then no longer
    anyone's children here, and would linger unless remembered. Workers a raylet of ours starts after the
    last look are found by the RAY_RAYLET_PID Ray gives them (`note_workers`)."""

    def __init__(self, period_s: float = 2.0):
        import threading

        self.seen: dict[int, Any] = {}
        self.raylets: set[str] = set()
        self._period_s = period_s
        threading.Thread(target=self._note_forever, name="descendants", daemon=True).start()

    def note(self) -> None:
        import psutil

        for process in psutil.Process().children(recursive=True):
            if process.pid not in self.seen:
                self.seen[process.pid] = process
                try:
                    if process.name() == "raylet":
                        self.raylets.add(str(process.pid))
                except psutil.Error:  # it ended meanwhile
                    pass

    def note_workers(self) -> None:
        import psutil

        for process in psutil.process_iter():
            try:
                if process.pid not in self.seen and process.environ().get("RAY_RAYLET_PID") in self.raylets:
                    self.seen[process.pid] = process
            except (psutil.Error, OSError):
                pass

    def running(self) -> list[Any]:
        return [process for process in self.seen.values() if process.is_running()]

    def _note_forever(self) -> None:
        while True:
            try:
                self.note()
            except Exception:  # a process that ends while listed: the next round sees the rest  # noqa: BLE001
                pass
            time.sleep(self._period_s)


def _named(process: Any, names: tuple[str, ...]) -> bool:
    try:
        return process.name() in names
    except Exception:  # it ended meanwhile  # noqa: BLE001
        return False


def stop(timeout_s: float, started: Descendants, say: Callable[[str], None] = print) -> None:
    """Shut Serve down (within `timeout_s`), then end every process this one started, an embedded Ray's
    included (SIGTERM, then SIGKILL after LINGER_S). Not ray.shutdown(): after a Ctrl-C to the whole group
    the raylet is gone before it could stop its agents, and a Serve call still under way when Ray's worker
    shuts down ends this process on the spot. The caller exits with os._exit (Ray's exit hook would
    wait on a Ray that is gone)."""
    import threading

    import psutil
    from ray import serve

    started.note()
    if timeout_s > 0:  # 0: nothing to drain
        worker = threading.Thread(target=serve.shutdown, daemon=True)
        worker.start()
        worker.join(timeout_s)
        started.note()
    # Ray's control processes first, so that nothing restarts what is ended next (an actor that dies is
    # restarted on a new worker while its GCS and raylet live)
    control = [process for process in started.running() if _named(process, CONTROL_PROCESSES)]
    for process in control:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(control, timeout=LINGER_S)
    for signal_name in ("terminate", "kill"):
        started.note_workers()  # a worker the raylet started since the last look
        left = started.running()
        for process in left:
            try:
                getattr(process, signal_name)()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=LINGER_S)
