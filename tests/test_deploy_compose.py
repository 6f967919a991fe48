"""docker-compose.yml and docker-compose.cpu.yml: valid Compose files with the structure we rely on.

No Docker daemon runs here, so the files are checked against the Compose specification's JSON
schema (the copy vendored by check-jsonschema, from PyPI) and their structure is asserted.
Where the `docker compose` plugin exists, `docker compose config` validates them too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lookout.cli import SUBCOMMANDS, build_parser
from shared.settings_env import env_name, load_settings, settings_fields
from tests.helpers import REPO

COMPOSE = REPO / "docker-compose.yml"
COMPOSE_CPU = REPO / "docker-compose.cpu.yml"
SERVICES = {
    "redis",
    "worker",
    "api",
    "proxy",
    "producer",
    "livekit",
    "alerts",
    "mosquitto",
    "livekit-bridge",
    "vllm",
    "worker-openai",
}
LOOKOUT_IMAGES = {"lookout:cpu", "lookout:gpu"}
# Interpolated variables that belong to third-party services, not to Lookout's settings.
# Compose's own: where the proxy publishes the API (not a Lookout setting).
FOREIGN_VARIABLES = {"LIVEKIT_KEYS", "PUBLISH_HOST"}
SETTINGS_VARIABLES = {env_name(f) for f in settings_fields()}


class Reset:
    """Compose's `!reset` tag: the override file removes the key."""


class Override:
    """Compose's `!override` tag: the override file replaces the value instead of merging."""

    def __init__(self, value: Any) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML loader that also understands Compose's `!reset` and `!override` tags."""


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


ComposeLoader.add_constructor("!reset", _reset)
ComposeLoader.add_constructor("!override", _override)


def load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=ComposeLoader)
    assert isinstance(data, dict)
    return data


def merge(base: Any, override: Any) -> Any:
    """Compose's merge for what these files use: mappings merge, tags reset or replace."""
    if isinstance(override, Override):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            else:
                merged[key] = merge(base.get(key), value)
        return merged
    return override


def strip_tags(value: Any) -> Any:
    """The override file as plain data, for schema validation on its own."""
    if isinstance(value, Override):
        return strip_tags(value.value)
    if isinstance(value, Reset):
        return None
    if isinstance(value, dict):
        return {k: strip_tags(v) for k, v in value.items() if not isinstance(v, Reset)}
    if isinstance(value, list):
        return [strip_tags(v) for v in value]
    return value


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    text = (
        resources.files("check_jsonschema")
        .joinpath("builtin_schemas/vendor/compose-spec.json")
        .read_text()
    )
    data = json.loads(text)
    assert data["title"] == "Compose Specification"
    return data  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def lookout_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if s.get("image") in LOOKOUT_IMAGES}


def test_compose_file_matches_the_compose_specification(
    compose: dict[str, Any], schema: dict[str, Any]
) -> None:
    jsonschema.validate(compose, schema, cls=jsonschema.Draft202012Validator)


def test_cpu_override_and_merged_result_match_the_specification(
    compose: dict[str, Any], schema: dict[str, Any]
) -> None:
    override = load(COMPOSE_CPU)
    jsonschema.validate(strip_tags(override), schema, cls=jsonschema.Draft202012Validator)
    jsonschema.validate(merge(compose, override), schema, cls=jsonschema.Draft202012Validator)


def test_schema_rejects_a_broken_file(compose: dict[str, Any], schema: dict[str, Any]) -> None:
    # Guards the validation itself: a typo in a service key must not pass.
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["healthcheck"]["intervall"] = "5s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_services_restart_policies_and_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
        assert "start_period" in service["healthcheck"], name
        assert service["logging"]["options"]["max-size"], name


def test_dependencies_wait_for_healthy_services(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ("redis", "mosquitto", "vllm"):  # they need nothing else
            continue
        depends = service["depends_on"]
        assert isinstance(depends, dict) and depends, name
        for target, condition in depends.items():
            assert target in services, (name, target)
            assert condition == {"condition": "service_healthy"}, (name, target)
    assert set(services["proxy"]["depends_on"]) == {"api"}
    for name in ("worker", "api", "producer", "livekit"):
        assert "redis" in services[name]["depends_on"], name


def test_lookout_services_run_lookout_subcommands_with_matching_healthchecks(
    services: dict[str, dict[str, Any]],
) -> None:
    roles = {
        "worker": "worker",
        "api": "api",
        "producer": "producer",
        "alerts": "alerts",
        "livekit-bridge": "livekit",
        "worker-openai": "worker",
    }
    found = lookout_services(services)
    assert set(found) == set(roles)
    for name, service in found.items():
        command = service["command"]
        assert command[0] in SUBCOMMANDS, name
        # The image's entrypoint is `lookout`: the command must parse as its arguments.
        parsed = build_parser(command[0]).parse_args(command)
        assert parsed.command == command[0], name
        assert service["healthcheck"]["test"][1:] == ["python", "-m", "lookout.health", roles[name]]
        assert service["init"] is True, name
        assert service["env_file"] == [{"path": ".env", "required": False}], name
    assert services["producer"]["command"] == ["producer", "--supervise"]
    assert build_parser("producer").parse_args(services["producer"]["command"]).supervise


def test_lookout_services_reach_redis_and_listen_on_all_interfaces(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in lookout_services(services).items():
        env = service["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["SERVER_HOST"] == "0.0.0.0", name


def test_every_variable_passed_to_lookout_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    for name, service in lookout_services(services).items():
        unknown = set(service["environment"]) - SETTINGS_VARIABLES
        assert not unknown, f"{name} passes variables that shared/settings.py lacks: {unknown}"


def test_values_passed_to_lookout_are_valid_settings(compose: dict[str, Any]) -> None:
    merged_cpu = merge(compose, load(COMPOSE_CPU))["services"]
    for services in (compose["services"], merged_cpu):
        for name, service in lookout_services(services).items():
            # `${VAR:-default}` as Compose fills it in when VAR is unset.
            env = {
                k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v))
                for k, v in service["environment"].items()
            }
            settings = load_settings(env, env_file=None)
            assert settings.server_host == "0.0.0.0", name
    assert load_settings({"ENGINE": "minicpmo"}, env_file=None).engine == "minicpmo"


def test_every_interpolated_variable_is_known() -> None:
    text = COMPOSE.read_text() + COMPOSE_CPU.read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    assert used, "expected ${...} interpolation"
    unknown = used - SETTINGS_VARIABLES - FOREIGN_VARIABLES
    assert not unknown, f"interpolated variables that are neither settings nor foreign: {unknown}"


def test_worker_reserves_one_nvidia_gpu_and_mounts_models_read_only(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker"]
    assert worker["image"] == "lookout:gpu"
    assert worker["build"]["dockerfile"] == "Dockerfile.gpu"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "./models:/app/models:ro" in worker["volumes"]
    assert "hf-cache:/home/lookout/.cache/huggingface" in worker["volumes"]
    assert "compile-cache:/home/lookout/.cache/compile" in worker["volumes"]  # survives restarts
    assert worker["environment"]["ENGINE"] == "${ENGINE:-minicpmo}"


def test_cpu_override_runs_the_cpu_image_without_a_gpu(compose: dict[str, Any]) -> None:
    merged = merge(compose, load(COMPOSE_CPU))["services"]["worker"]
    assert merged["image"] == "lookout:cpu"
    assert merged["build"] == {"context": ".", "dockerfile": "Dockerfile.cpu"}
    assert merged["environment"]["ENGINE"] == "cpu"
    assert merged["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert "deploy" not in merged and "volumes" not in merged
    assert merged["healthcheck"]["test"][-1] == "worker"


def test_api_scales_behind_one_published_port(services: dict[str, dict[str, Any]]) -> None:
    api, proxy = services["api"], services["proxy"]
    # A published port or a fixed container name would stop `--scale api=N`.
    assert "ports" not in api and "container_name" not in api
    assert not any("container_name" in s for s in services.values())
    # Loopback unless PUBLISH_HOST says otherwise: an open API is not on the network by default.
    assert proxy["ports"] == [
        "${PUBLISH_HOST:-127.0.0.1}:${SERVER_PORT:-8199}:${SERVER_PORT:-8199}"
    ]
    assert api["environment"]["ALLOW_OPEN"] == "${ALLOW_OPEN:-true}"
    assert proxy["environment"]["API_HOST"] == "api"
    assert "./infra/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    published = [n for n, s in services.items() if "ports" in s]
    assert sorted(published) == ["livekit", "mosquitto", "proxy"]
    assert services["mosquitto"]["ports"] == ["${PUBLISH_HOST:-127.0.0.1}:1883:1883"]


def test_proxy_gets_every_variable_its_caddyfile_reads(services: dict[str, dict[str, Any]]) -> None:
    caddyfile = (REPO / "infra/Caddyfile").read_text()
    read = set(re.findall(r"\{\$([A-Z_]+)", caddyfile))
    assert read == set(services["proxy"]["environment"]) == {"PROXY_PORT", "API_HOST", "API_PORT"}


def test_livekit_is_optional_and_redis_persists_to_a_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert services["livekit"]["profiles"] == ["livekit"]
    assert services["mosquitto"]["profiles"] == ["mqtt"]
    assert services["livekit-bridge"]["profiles"] == ["livekit"]
    assert sorted(n for n, s in services.items() if "profiles" in s) == [
        "livekit",
        "livekit-bridge",
        "mosquitto",
        "vllm",
        "worker-openai",
    ]
    assert "./infra/livekit.yaml:/etc/livekit.yaml:ro" in services["livekit"]["volumes"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert set(compose["volumes"]) == {"redis-data", "hf-cache", "compile-cache", "mosquitto-data"}


def test_bind_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./infra/"):
                assert (REPO / source).is_file(), f"{name} mounts missing {source}"
    for dockerfile in ("Dockerfile.cpu", "Dockerfile.gpu"):
        assert (REPO / dockerfile).is_file()


def _compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_plugin(), reason="the docker compose plugin is not installed")
@pytest.mark.parametrize(
    "files", [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.cpu.yml"]]
)
def test_docker_compose_config_accepts_the_files(files: list[str]) -> None:
    args = [arg for f in files for arg in ("-f", f)]
    result = subprocess.run(
        ["docker", "compose", *args, "config", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_livekit_profile_shares_one_credential_pair_between_server_and_bridge(
    services: dict[str, dict[str, Any]],
) -> None:
    # The server's keys are the pair the bridge and the API read from .env, so they can never
    # differ; the bridge reaches the server by its service name and waits for it to be healthy.
    server, bridge = services["livekit"], services["livekit-bridge"]
    assert server["environment"]["LIVEKIT_KEYS"] == "${LIVEKIT_API_KEY:-}: ${LIVEKIT_API_SECRET:-}"
    assert bridge["command"] == ["livekit"]
    assert bridge["environment"]["LIVEKIT_URL"] == "ws://livekit:7880"
    assert bridge["depends_on"]["livekit"] == {"condition": "service_healthy"}
    assert bridge["env_file"] == [{"path": ".env", "required": False}]
    settings = load_settings(
        {
            "LIVEKIT_URL": bridge["environment"]["LIVEKIT_URL"],
            "LIVEKIT_API_KEY": "k",
            "LIVEKIT_API_SECRET": "s" * 32,
        },
        env_file=None,
    )
    assert settings.livekit_url == "ws://livekit:7880"
    # The ports a real deployment opens are the ones infra/livekit.yaml configures.
    config = yaml.safe_load((REPO / "infra/livekit.yaml").read_text())
    rtc = config["rtc"]
    assert server["ports"] == [
        f"{config['port']}:{config['port']}",
        f"{rtc['tcp_port']}:{rtc['tcp_port']}",
        f"{rtc['port_range_start']}-{rtc['port_range_end']}:{rtc['port_range_start']}-{rtc['port_range_end']}/udp",
    ]
    docs = (REPO / "docs/livekit.md").read_text()
    for port in (
        str(config["port"]),
        str(rtc["tcp_port"]),
        f"{rtc['port_range_start']}-{rtc['port_range_end']}",
        "3478",
        "5349",
    ):
        assert port in docs, f"docs/livekit.md does not mention port {port}"


def test_vllm_profile_serves_minicpmo_to_an_openai_worker(
    services: dict[str, dict[str, Any]],
) -> None:
    vllm, worker = services["vllm"], services["worker-openai"]
    assert vllm["profiles"] == worker["profiles"] == ["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:v")
    command = vllm["command"]
    model = command[command.index("--model") + 1]
    assert "--trust-remote-code" in command and command[command.index("--port") + 1] == "8000"
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "ports" not in vllm and vllm["expose"] == ["8000"]  # only the worker reaches it
    assert vllm["environment"]["VLLM_API_KEY"] == "${OPENAI_API_KEY:-}"
    env = worker["environment"]
    assert env["ENGINE"] == "openai" and env["OPENAI_MODEL"] == model
    assert env["OPENAI_BASE_URL"] == "http://vllm:8000/v1"
    assert worker["depends_on"]["vllm"] == {"condition": "service_healthy"}
    assert "deploy" not in worker  # the GPU is vLLM's; the worker only talks HTTP
    settings = load_settings(env, env_file=None)
    assert (settings.engine, settings.openai_model) == ("openai", model)
