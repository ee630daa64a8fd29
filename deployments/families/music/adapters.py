"""LoRA adapters on MusicGen: catalog look-ups, the installed libraries' support, and switching them
on one loaded model without ever leaving the base model changed.

Adapters go through transformers' PEFT integration (`load_adapter`, `set_adapter`, ...), which
checks the installed peft against its own floor on each call. A mismatch (transformers 5.24 wants
peft >= 0.22.0) or an adapter that does not fit the base fails there, possibly after the adapter's
layers were injected; so a model whose adapter switch failed is marked `tainted`, and the deployment
swaps it for a freshly loaded copy before it serves again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from packaging.version import Version

from deployments.errors import ModelUnavailable


def support_problem(peft_installed: str | None, peft_needed: str | None) -> str | None:
    """Why adapters cannot work with these versions (peft's installed one, the floor transformers
    checks for), or None when they can."""
    if peft_installed is None:
        return "LoRA adapters need the peft package, which is not installed"
    if peft_needed and Version(peft_installed) < Version(peft_needed):
        return f"LoRA adapters need peft >= {peft_needed}; installed {peft_installed}"
    return None


@functools.cache
def installed_support_problem() -> str | None:
    """`support_problem` for the libraries installed in this process."""
    from transformers.integrations import peft as integration

    try:
        installed: str | None = version("peft")
    except PackageNotFoundError:
        installed = None
    return support_problem(installed, getattr(integration, "MIN_PEFT_VERSION", None))


def require_adapter_support() -> None:
    """503 naming the cause when the installed libraries cannot apply adapters (checked before any work)."""
    problem = installed_support_problem()
    if problem:
        raise ModelUnavailable(problem, error="Adapters unavailable")


class AdapterSwitchFailed(ModelUnavailable):
    """Applying or switching off an adapter failed; the model it was tried on is tainted."""

    error = "Adapter unusable"


@dataclass
class AdapterSlots:
    """The adapters loaded into one model, and whether a failed switch may have changed its weights."""

    loaded: set[str] = field(default_factory=set)
    tainted: bool = False

    def use(self, model: Any, adapter: str | None, path: str | None) -> None:
        """Make `adapter` (None: the plain base model) the active one on `model`."""
        if self.tainted:  # never run on a half-switched model; the caller reloads it first
            raise AdapterSwitchFailed("The model is being reloaded after a failed adapter switch")
        try:
            if adapter is None:
                if self.loaded:
                    model.disable_adapters()
                return
            if adapter not in self.loaded:
                model.load_adapter(path, adapter_name=adapter)
                self.loaded.add(adapter)
            model.set_adapter(adapter)
            model.enable_adapters()
        except Exception as error:  # e.g. weights shaped for another base, or a peft the integration refuses
            self.tainted = True
            what = f"Adapter '{adapter}' could not be applied" if adapter else "Adapters could not be switched off"
            raise AdapterSwitchFailed(f"{what}: {type(error).__name__}: {error}") from None
