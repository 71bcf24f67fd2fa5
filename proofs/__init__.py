"""Proof bundles: turn a scenario run directory into a deposit-ready, verifiable bundle for ANS Convergence.

    build_bundle(run_dir, out_dir) -> Path     the zip (the unzipped bundle folder is kept beside it)
    verify_bundle(path) -> list[str]           problems found (French), empty when the bundle is intact
    main_build / main_verify                   CLI entry points returning an exit code
"""

from __future__ import annotations

from .bundle import BundleError, build_bundle, bundle_name, main_build, main_verify, verify_bundle

__all__ = ["BundleError", "build_bundle", "bundle_name", "main_build", "main_verify", "verify_bundle"]
