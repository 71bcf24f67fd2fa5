"""Drivers written by users: `segur-bench run --driver package.module:Class`.

The class implements the step vocabulary (`driver_protocol.LgcDriver`) and is built as
``Class(page=…, lgc_url=…, sims=…, rec=…)``. It is wrapped so that a method it lacks, or one that fails, stops
the step with a French message naming the step, the method and the driver, instead of a bare AttributeError.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from functools import cache
from pathlib import Path
from typing import Any

from .runtime import RunRecorder

STEPS = Path(__file__).resolve().parent / "steps.py"
SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class DriverError(Exception):
    """A driver that cannot be loaded, or a step it cannot play."""


def is_plugin(spec: str) -> bool:
    return ":" in spec


@cache
def step_vocabulary() -> frozenset[str]:
    """The methods the scenario steps call on `run.driver` (read from steps.py)."""
    tree = ast.parse(STEPS.read_text(encoding="utf-8"))
    return frozenset(node.func.attr for node in ast.walk(tree)
                     if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                     and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "driver")


def load_driver_class(spec: str) -> type:
    """The class named by "package.module:Class", importable from the current sys.path (PYTHONPATH)."""
    if not SPEC.match(spec):
        raise DriverError(f"pilote « {spec} » : attendu paquet.module:Classe (ex. mon_pilote:PiloteMonLgc)")
    module_name, class_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise DriverError(f"pilote « {spec} » : module {exc.name!r} introuvable (le dossier qui le contient "
                          "est-il dans PYTHONPATH ?)") from None
    except Exception as exc:  # the user's module fails on import: say where
        raise DriverError(f"pilote « {spec} » : l'import de {module_name} échoue : {type(exc).__name__}: {exc}") \
            from exc
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise DriverError(f"pilote « {spec} » : {module_name} n'a pas de classe {class_name}")
    return cls


def missing_methods(cls: type) -> list[str]:
    """The vocabulary methods the class does not have (the steps that call them will fail)."""
    return sorted(m for m in step_vocabulary() if not callable(getattr(cls, m, None)))


class GuardedDriver:
    """Passes the steps' calls to the user's driver; a missing or failing method becomes a DriverError naming
    the step being played."""

    def __init__(self, driver: Any, spec: str, rec: RunRecorder) -> None:
        self._driver, self._spec, self._rec = driver, spec, rec

    def _step(self) -> str:
        steps = getattr(self._rec, "steps", None) or []
        return f"« {steps[-1].keyword} {steps[-1].text} »" if steps else "(hors étape)"

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._driver, name, None)
        if not callable(method):
            raise DriverError(f"le pilote {self._spec} n'a pas de méthode {name}, nécessaire à l'étape "
                              f"{self._step()} (vocabulaire : scenarios/driver_protocol.py)")

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except DriverError:
                raise
            except AssertionError:
                raise  # the driver judged something itself: keep its words
            except Exception as exc:
                raise DriverError(f"le pilote {self._spec} a échoué dans {name} à l'étape {self._step()} : "
                                  f"{type(exc).__name__}: {exc}") from exc

        return call


def build_driver(spec: str, *, page: Any, lgc_url: str, sims: Any, rec: RunRecorder) -> GuardedDriver:
    cls = load_driver_class(spec)
    try:
        driver = cls(page=page, lgc_url=lgc_url, sims=sims, rec=rec)
    except Exception as exc:
        raise DriverError(f"pilote « {spec} » : {cls.__name__}(page=…, lgc_url=…, sims=…, rec=…) échoue : "
                          f"{type(exc).__name__}: {exc}") from exc
    return GuardedDriver(driver, spec, rec)
