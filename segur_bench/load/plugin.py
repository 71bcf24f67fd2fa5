"""`--target module:Class`: a vendor's LoadTarget, loaded as `segur-bench run --driver module:Class` loads a driver
(scenarios/driver_plugin.py), and checked before any Locust process starts."""

from __future__ import annotations

import importlib
import re

from .simulators_target import SimulatorTarget
from .target import OPERATIONS, LoadTarget

SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class TargetError(ValueError):
    """A --target that cannot be loaded (bad spec, import error, not a LoadTarget)."""


def load_target_class(spec: str | None) -> type[LoadTarget]:
    """`module:Class` (importable from PYTHONPATH or the current directory) or None for the simulators."""
    if not spec:
        return SimulatorTarget
    if not SPEC.match(spec):
        raise TargetError(f"--target {spec!r}: module:Class expected (e.g. my_lgc_load:MyLgcTarget)")
    module_name, class_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetError(f"--target {spec!r}: module {exc.name!r} not found (is the folder that holds it on "
                          "PYTHONPATH, or the current directory?)") from None
    except Exception as exc:  # the vendor's module fails on import: say where
        raise TargetError(f"--target {spec!r}: importing {module_name} fails: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, LoadTarget):
        raise TargetError(f"--target {spec!r}: {class_name} is not a LoadTarget subclass of {module_name} "
                          "(segur_bench/load/template_target.py shows one)")
    missing = [op for op in OPERATIONS if getattr(cls, op) is getattr(LoadTarget, op)]
    if missing:
        raise TargetError(f"--target {spec!r}: {class_name} does not implement {', '.join(missing)}")
    return cls
