"""Load profiles run with Locust (`segur-bench load PROFILE`): README.md of this package."""

from __future__ import annotations

from pathlib import Path

PROFILES = {"cabinet": Path(__file__).with_name("cabinet.py")}
