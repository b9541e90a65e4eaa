"""The Dockerfile and compose.yaml, read as Docker reads them (no Docker engine runs here):
a slim base, a non-root user, a health check, the roles as commands, nothing secret baked
in, and a compose file whose services run those roles against its own Redis.

Semantics from the Dockerfile reference (https://docs.docker.com/reference/dockerfile/:
USER, HEALTHCHECK, ENTRYPOINT/CMD exec form) and the Compose specification
(https://docs.docker.com/reference/compose-file/: services, depends_on conditions,
secrets, extension fields and YAML merge keys).
"""

from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from dockerfile_parse import DockerfileParser

from rustyflower.adapters.cli.main import app

REPO = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
INTERPOLATION = re.compile(r"^\$\{[A-Z0-9_]+(:?-)?\}$")  # ${NAME}, ${NAME:-}: empty default
ROOT_USERS = {"root", "0"}


def dockerfile() -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((REPO / "Dockerfile").read_bytes()))


def final_stage(parser: DockerfileParser) -> list[dict[str, Any]]:
    """The instructions after the last FROM: what the image that runs is made of."""
    structure = parser.structure
    last_from = max(i for i, one in enumerate(structure) if one["instruction"] == "FROM")
    return structure[last_from:]


def exec_form(value: str) -> list[str]:
    found = json.loads(value)
    assert isinstance(found, list) and all(isinstance(word, str) for word in found), value
    return found


def compose() -> dict[str, Any]:
    document = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def rustyflower_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in document["services"].items() if name != "redis"}


def test_the_base_is_slim_python_in_every_stage() -> None:
    images = dockerfile().parent_images
    assert images and all(re.fullmatch(r"python:3\.1[1-9]+-slim(-\w+)?", i) for i in images)


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    users = [
        one["value"].strip() for one in final_stage(dockerfile()) if one["instruction"] == "USER"
    ]
    assert users, "no USER in the final stage: the image would run as root"
    user = users[-1].split(":")[0]  # the last USER is the one the container runs as
    assert user not in ROOT_USERS
    assert user.isdigit(), "a numeric uid, so that Kubernetes' runAsNonRoot can verify it"


def test_the_image_checks_its_health_with_the_script_it_ships() -> None:
    stage = final_stage(dockerfile())
    (check,) = [one["value"] for one in stage if one["instruction"] == "HEALTHCHECK"]
    options, _, command = check.partition("CMD")
    assert command.strip(), f"HEALTHCHECK {check}: no CMD (NONE would turn it off)"
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in options, option
    (program,) = exec_form(command.strip())
    copies = [shlex.split(one["value"]) for one in stage if one["instruction"] == "COPY"]
    shipped = {words[-1]: words[-2] for words in copies}
    assert program.startswith("/") or f"/usr/local/bin/{program}" in shipped
    assert (REPO / shipped[f"/usr/local/bin/{program}"]).is_file()


def test_the_roles_are_commands_of_the_rustyflower_entrypoint() -> None:
    stage = final_stage(dockerfile())
    (entrypoint,) = [one["value"] for one in stage if one["instruction"] == "ENTRYPOINT"]
    (default,) = [one["value"] for one in stage if one["instruction"] == "CMD"]
    assert exec_form(entrypoint) == ["rustyflower"]  # exec form: SIGTERM reaches it
    assert exec_form(default)[:1] == ["serve"]  # the API and the dashboard
    assert_cli_accepts(exec_form(default))
    assert "8080" in [one["value"] for one in stage if one["instruction"] == "EXPOSE"]


def test_nothing_secret_is_baked_into_the_image() -> None:
    parser = dockerfile()
    for one in parser.structure:
        if one["instruction"] in ("ENV", "ARG"):
            assert not SECRET_NAME.search(one["value"]), f"{one['instruction']} {one['value']}"
    assert not any(SECRET_NAME.search(name) for name in {**parser.envs, **parser.args})
    # the build context is an allow-list: what the COPY lines need, never .env or secrets/
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignored if line.startswith("!")]
    assert ignored[[line.strip() for line in ignored].index("*")] == "*"
    assert not [name for name in allowed if name.startswith((".env", "secrets"))]
    for one in parser.structure:
        if one["instruction"] == "COPY" and "--from=" not in one["value"]:
            sources = [w for w in shlex.split(one["value"]) if not w.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), source
                assert source.split("/")[0] in allowed, f"{source} is not in the build context"


def test_compose_runs_redis_and_every_role_against_it() -> None:
    document = compose()
    services = document["services"]
    redis = services["redis"]
    assert re.fullmatch(r"redis:7[\w.-]*", redis["image"])
    assert "--appendonly" in redis["command"]  # instances survive a restart
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    ours = rustyflower_services(document)
    commands = {name: service["command"] for name, service in ours.items()}
    assert commands["api"][0] == "serve" and "--scheduler" in commands["scheduler"]
    assert commands["worker"][:2] == ["worker", "--no-scheduler"]
    for name, service in ours.items():
        assert service["build"] == "." and service["image"] == "rustyflower:local", name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert service["environment"]["RUSTYFLOWER_REDIS_URL"].startswith("redis://redis:"), name
        assert_cli_accepts(service["command"])
        for module in re.findall(r"--activities (\S+)", " ".join(service["command"])):
            assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module
    published = ours["api"]["ports"]
    assert published == ["127.0.0.1:8080:8080"]  # the API's own port, on loopback


def test_compose_takes_secrets_from_outside_the_file() -> None:
    document = compose()
    for name, service in document["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(variable):
                assert value is None or INTERPOLATION.match(str(value)), (name, variable)
    api = document["services"]["api"]
    (token_file,) = re.findall(r"--token-file (\S+)", " ".join(api["command"]))
    (secret,) = api["secrets"]
    assert token_file == f"/run/secrets/{secret}"
    source = document["secrets"][secret]["file"]
    assert "secrets/" in (REPO / ".gitignore").read_text().splitlines()
    assert source.startswith("./secrets/")


def assert_cli_accepts(command: list[str]) -> None:
    """Every option the container gives exists on that `rustyflower` command."""
    commands: dict[str, Any] = getattr(typer.main.get_command(app), "commands", {})
    chosen = commands.get(command[0])
    assert chosen is not None, f"rustyflower has no command {command[0]}"
    known = {option for param in chosen.params for option in (*param.opts, *param.secondary_opts)}
    given = [word.split("=")[0] for word in command[1:] if word.startswith("--")]
    assert set(given) <= known, set(given) - known


@pytest.mark.parametrize("path", ["docs/container.md", "README.md"])
def test_the_container_is_documented(path: str) -> None:
    text = (REPO / path).read_text()
    assert "compose.yaml" in text and "Dockerfile" in text
