"""The environment the suite runs in is the one the lock file describes: a fresh clone installs
exactly what CI tested. scripts/test.sh --latest runs the suite on the newest allowed versions
instead (INFERENCE_LOCK names its lock, so this still checks against the right file)."""

from __future__ import annotations

import os
import re
import sysconfig
from importlib.metadata import distributions
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "ray-inference-service"
INSTALLER_TOOLS = {"pip"}  # the venv's own installer, never locked


def locked(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, version = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", requirement).groups()
            pins[canonicalize_name(name)] = version
    return pins


def test_every_installed_package_is_the_locked_version():
    lock = Path(os.environ.get("INFERENCE_LOCK") or ROOT / "requirements-test.lock")
    # the venv's own site-packages: Ray puts its vendored copies (ray/thirdparty_files) on sys.path too
    site = list({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions(path=site)}
    installed = {name: v for name, v in installed.items() if name not in INSTALLER_TOOLS | {PROJECT}}
    pins = locked(ROOT / lock)
    assert {n: v for n, v in installed.items() if pins.get(n) != v} == {}, "installed but not as locked"
    assert {n: v for n, v in pins.items() if n not in installed} == {}, "locked but not installed"


def test_the_service_lock_takes_the_test_lock_versions():
    service, test = locked(ROOT / "requirements.lock"), locked(ROOT / "requirements-test.lock")
    assert {n: v for n, v in service.items() if test.get(n) != v} == {}
    for name in ("torch", "ray", "transformers", "peft", "huggingface-hub", "sentence-transformers", "demucs"):
        assert name in service, name
