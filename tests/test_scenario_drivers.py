"""The two drivers speak one vocabulary: every method the scenario steps call on `run.driver` exists on the
Playwright driver (reference LGC) and on the guided driver (a vendor's LGC, an operator), with the same
parameters, so a scenario that passes against the reference LGC can be played by an operator unchanged — and the
automated operator (CI) can run each guided instruction on the reference driver."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from scenarios.driver_guided import GuidedDriver
from scenarios.driver_playwright import ReferenceLgcDriver

STEPS = Path(__file__).resolve().parents[1] / "scenarios" / "steps.py"


def _called_on_driver() -> set[str]:
    tree = ast.parse(STEPS.read_text(encoding="utf-8"))
    return {node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "driver"}


def _params(cls: type, name: str) -> list[tuple[str, object]]:
    sig = inspect.signature(getattr(cls, name))
    return [(p.name, p.kind) for p in sig.parameters.values() if p.name != "self"]


def test_the_steps_call_the_driver() -> None:
    assert len(_called_on_driver()) >= 30  # the parse finds the vocabulary (guards the test itself)


@pytest.mark.parametrize("name", sorted(_called_on_driver()))
def test_every_step_method_exists_on_both_drivers_with_the_same_parameters(name: str) -> None:
    assert hasattr(ReferenceLgcDriver, name), f"ReferenceLgcDriver.{name} missing"
    assert hasattr(GuidedDriver, name), f"GuidedDriver.{name} missing: an operator could not play this step"
    reference, guided = _params(ReferenceLgcDriver, name), _params(GuidedDriver, name)
    # the reference driver may take more, optional, arguments (read_apcv: the QR payload an operator scanned)
    assert reference[:len(guided)] == guided
    extra = [n for n, _ in reference[len(guided):]]
    defaults = inspect.signature(getattr(ReferenceLgcDriver, name)).parameters
    assert all(defaults[n].default is not inspect.Parameter.empty for n in extra), extra


def test_every_guided_instruction_can_be_run_by_the_automated_operator() -> None:
    guided = {n for n, f in inspect.getmembers(GuidedDriver, inspect.isfunction) if not n.startswith("_")}
    assert sorted(n for n in guided if not hasattr(ReferenceLgcDriver, n)) == []
