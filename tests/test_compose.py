"""docker-compose.yml must describe the same bench as `segur-bench up`: the PKI, every simulator with its HTTP and
TLS ports, the network layer, the HTTPS front door and the reference LGC, wired so that one name works for the
host's browser and inside the network (PSC's issuer).

No Docker engine runs here: the file is checked with `docker compose config` when the client has the compose
plugin, and by parsing it always."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from segur_bench.config import BenchConfig
from segur_bench.lgc import lgc_settings
from simulators import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _settings(command: list[str]) -> dict[str, str]:
    return dict(command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "--set")


def test_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker compose client here: the file is checked by parsing only")
    done = subprocess.run([docker, "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_every_simulator_has_a_service_and_the_stack_is_whole(compose: dict) -> None:
    assert set(registry.SERVICES) | {"pki", "network", "front-door", "reference-lgc"} <= set(compose["services"])
    assert not any(s.get("profiles") for s in compose["services"].values()), "everything starts with `up`"


@pytest.mark.parametrize("name", sorted(registry.SERVICES))
def test_simulator_ports_and_command_match_the_registry(compose: dict, name: str) -> None:
    svc = compose["services"][name]
    info = registry.SERVICES[name]
    command = svc["command"]
    assert command[:2] == ["sim", name]
    assert _option(command, "--port") == str(info.port) and _option(command, "--tls-port") == str(info.tls_port)
    assert _option(command, "--data-dir") == "/data" and _option(command, "--host") == "0.0.0.0"
    assert f"{name}.localhost" in [command[i + 1] for i, a in enumerate(command) if a == "--tls-name"]
    expected = {f"127.0.0.1:{p}:{p}" for p in (info.port, info.tls_port, *(p for _, p in info.extra_ports))}
    assert set(svc["ports"]) == expected
    assert str(info.port) in " ".join(svc["healthcheck"]["test"])
    assert svc["depends_on"] == {"pki": {"condition": "service_completed_successfully"}}


def test_the_pki_is_made_once_before_anything_else(compose: dict) -> None:
    pki = compose["services"]["pki"]
    assert pki["command"] == ["pki", "--data-dir", "/data", "init"] and pki["restart"] == "no"


def test_services_share_one_image_built_from_the_dockerfile(compose: dict) -> None:
    images = {s.get("image") for s in compose["services"].values()}
    assert images == {"segur-bench:latest"}
    assert all(s.get("build") == "." for s in compose["services"].values())
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["segur-bench"]' in dockerfile
    for package in ("segur_bench", "simulators", "reference_lgc", "network_proxy"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert "SEGUR_BENCH_MITMDUMP=/opt/mitm/bin/mitmdump" in dockerfile


def test_psc_has_one_issuer_for_the_browser_and_the_containers(compose: dict) -> None:
    psc = compose["services"]["psc"]
    assert _option(psc["command"], "--public-url") == "https://psc.localhost:8404"
    assert "psc.localhost" in psc["networks"]["default"]["aliases"]
    for name in ("dmp", "on", "mss"):
        settings = _settings(compose["services"][name]["command"])
        assert settings["psc_issuer"] == "https://psc.localhost:8404/auth/realms/esante-wallet", name
        assert settings["psc_jwks_url"].startswith("http://psc:8104/"), name  # the back channel


def test_the_network_layer_publishes_every_port_plus_1000_under_the_service_aliases(compose: dict) -> None:
    net = compose["services"]["network"]
    assert net["command"][:2] == ["network", "serve"] and "--service-hosts" in net["command"]
    published = {int(p.rsplit(":", 1)[1]) for p in net["ports"]}
    for name, info in registry.SERVICES.items():
        if name == "psc":
            continue  # the LGC logs in with PSC directly, like a browser
        assert {info.port + 1000, info.tls_port + 1000} <= published, name
        assert f"{name}.localhost" in net["networks"]["default"]["aliases"]
    assert {p + 1000 for _, p in registry.SERVICES["mss"].extra_ports} <= published


def test_the_front_door_routes_every_service_through_the_layer(compose: dict) -> None:
    door = compose["services"]["front-door"]
    routes = dict(door["command"][i + 1].split("=", 1) for i, a in enumerate(door["command"]) if a == "--route")
    assert set(routes) == set(registry.SERVICES)
    for name, info in registry.SERVICES.items():
        expected = f"psc:{info.tls_port}" if name == "psc" else f"network:{info.tls_port + 1000}"
        assert routes[name] == expected
    assert door["ports"] == ["127.0.0.1:443:8443"]


def test_the_reference_lgc_goes_through_the_layer_over_https(compose: dict, tmp_path: Path) -> None:
    lgc = compose["services"]["reference-lgc"]
    assert lgc["ports"] == [f"127.0.0.1:{registry.REFERENCE_LGC_PORT}:8000"]
    assert "./compose:/etc/segur-bench:ro" in lgc["volumes"]
    config = BenchConfig.load(ROOT / "compose" / "lgc.toml")
    config.pki = tmp_path / "pki"  # (the container's is /data/pki)
    settings = tomllib.loads(lgc_settings(config, tmp_path / "lgc"))
    for name in ("insi", "dmp", "on", "apcv", "annuaire"):
        info = registry.SERVICES[name]
        assert settings["services"][name]["url"] == f"https://{name}.localhost:{info.tls_port + 1000}{info.base_path}"
    assert settings["psc"]["issuer"] == "https://psc.localhost:8404/auth/realms/esante-wallet"
    assert settings["services"]["mss"]["extra"] == {"smtp_port": "3587", "imap_port": "3143"}
    assert settings["tls"]["ca_file"].endswith("ca-chain.pem")
    assert settings["services"]["insi"]["tls"]["cert_file"].endswith("reference-lgc-insi.crt")
