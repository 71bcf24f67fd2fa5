"""Collects the features `segur-bench run` selected (all of scenarios/features by default)."""

import os

from pytest_bdd import scenarios

from .steps import *  # noqa: F403 - step definitions must be visible in this module

_selected = [f for f in os.environ.get("SEGUR_BENCH_FEATURES", "").split(",") if f]
if _selected:
    for _feature in _selected:
        scenarios(f"features/{_feature}")
else:
    scenarios("features")
