"""docker-compose.yml must describe the same simulators, ports and settings as `segur-bench up`.

Docker cannot run here, so the file is checked by parsing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulators import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_simulator_has_a_service(compose: dict) -> None:
    assert set(registry.SERVICES) <= set(compose["services"])


@pytest.mark.parametrize("name", sorted(registry.SERVICES))
def test_ports_and_command_match_the_registry(compose: dict, name: str) -> None:
    svc = compose["services"][name]
    info = registry.SERVICES[name]
    command = svc["command"]
    assert command[:2] == ["sim", name]
    assert command[command.index("--port") + 1] == str(info.port)
    assert command[command.index("--data-dir") + 1] == "/data"
    expected = {f"127.0.0.1:{info.port}:{info.port}"} | {f"127.0.0.1:{p}:{p}" for _, p in info.extra_ports}
    assert set(svc["ports"]) == expected
    assert str(info.port) in " ".join(svc["healthcheck"]["test"])


@pytest.mark.parametrize("name", sorted(registry.SERVICES))
def test_only_available_simulators_start_by_default(compose: dict, name: str) -> None:
    profiles = compose["services"][name].get("profiles", [])
    if registry.exists(name):
        assert profiles == [], f"{name} exists: it must start with `docker compose up`"
    else:
        assert profiles == ["pending"], f"{name} is not written yet: it must stay in the 'pending' profile"


def test_services_share_one_image_built_from_the_dockerfile(compose: dict) -> None:
    images = {s.get("image") for s in compose["services"].values()}
    assert images == {"segur-bench:latest"}
    assert all(s.get("build") == "." for s in compose["services"].values())
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["segur-bench"]' in dockerfile


def test_placeholders_for_lgc_and_proxy(compose: dict) -> None:
    assert compose["services"]["reference-lgc"]["ports"] == [f"127.0.0.1:{registry.REFERENCE_LGC_PORT}:8000"]
    assert "network-proxy" in compose["services"]


def test_token_checking_services_reach_psc_inside_the_network_and_psc_keeps_its_public_issuer(compose: dict) -> None:
    psc = compose["services"]["psc"]["command"]
    assert psc[psc.index("--public-url") + 1] == f"http://127.0.0.1:{registry.SERVICES['psc'].port}"
    for name in ("dmp", "on", "mss"):
        command = compose["services"][name]["command"]
        settings = [command[i + 1] for i, arg in enumerate(command) if arg == "--set"]
        assert any(s.startswith("psc_jwks_url=http://psc:8104/") for s in settings), name
