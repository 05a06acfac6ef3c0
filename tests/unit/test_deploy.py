"""The deployment files and the building blocks of `rag up`.

No Docker engine runs here, so the images are not built (docker/README.md says so);
what can be checked is checked: every compose file parses with Debian's
docker-compose, only the UI and API are published, every RAG_* name the files set is
a real Settings field, and the secrets are explained by docker/env.example.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from rag.keys import KeyStore
from rag.settings import Settings
from rag.up import ADMIN_KEY_NAME, Child, UpError, admin_key_file, check_ports, ensure_admin_key

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
ENV_EXAMPLE = DOCKER / "env.example"
COMPOSE_FILES = [DOCKER / "compose.yaml", DOCKER / "cluster" / "compose.yaml"]
# Services that may publish a port on the host: the UI, and the API (directly or via its load balancer).
PUBLISHED = {"api", "ui", "lb"}


def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    assert binary, (
        "the docker-compose binary is missing; `make tools` installs it "
        "(apt-get install -y docker-compose), and `make test` runs that first"
    )
    return binary


def compose_config(path: Path, env_file: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "COMPOSE_"))}
    return subprocess.run(
        [docker_compose(), "--env-file", str(env_file), "-f", str(path), "config"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def env_file_names(path: Path) -> set[str]:
    """Variables an env file sets, including commented-out example lines (`# NAME=value`)."""
    return set(re.findall(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", path.read_text(), re.MULTILINE))


def interpolated_names(path: Path) -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", path.read_text()))


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compose_file_parses_and_publishes_only_ui_and_api(path):
    result = compose_config(path, ENV_EXAMPLE)
    assert result.returncode == 0, f"{path} does not parse:\n{result.stderr}"
    services = yaml.safe_load(result.stdout)["services"]
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published and published <= PUBLISHED, f"unexpected published ports: {published - PUBLISHED}"
    for name, svc in services.items():
        for port in svc.get("ports", []):
            # "127.0.0.1:8000:8000/tcp" (docker-compose 1.x) or {host_ip: ..., ...} (Compose v2)
            host_ip = port.split(":")[0] if isinstance(port, str) else port.get("host_ip")
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip!r} by default, not loopback"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compose_refuses_to_start_without_the_qdrant_secret(path, tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose_config(path, empty)
    assert result.returncode != 0
    assert "RAG_QDRANT_API_KEY" in result.stderr


def test_every_rag_variable_is_a_settings_field():
    fields = set(Settings.model_fields)
    names: dict[str, set[str]] = {str(ENV_EXAMPLE.relative_to(ROOT)): env_file_names(ENV_EXAMPLE)}
    for path in COMPOSE_FILES:
        config = yaml.safe_load(compose_config(path, ENV_EXAMPLE).stdout)
        set_by_services = {key for svc in config["services"].values() for key in svc.get("environment", {})}
        names[str(path.relative_to(ROOT))] = set_by_services | interpolated_names(path)
    unknown = {
        where: sorted(n for n in found if n.startswith("RAG_") and n[4:].lower() not in fields)
        for where, found in names.items()
    }
    assert not any(unknown.values()), f"RAG_* names that are not Settings fields: {unknown}"
    # The check above must have seen the settings the deployment depends on.
    assert {"RAG_QDRANT_URL", "RAG_QDRANT_API_KEY", "RAG_LLM_BASE_URL", "RAG_API_URL"} <= set().union(*names.values())
    assert {"RAG_QDRANT_SHARD_NUMBER", "RAG_QDRANT_REPLICATION_FACTOR"} <= names["docker/cluster/compose.yaml"]


def test_env_example_explains_every_variable_the_compose_files_read():
    documented = env_file_names(ENV_EXAMPLE)
    for path in COMPOSE_FILES:
        missing = interpolated_names(path) - documented
        assert not missing, f"{path.relative_to(ROOT)} reads variables env.example does not mention: {missing}"


def test_cluster_replicates_every_shard():
    config = yaml.safe_load(compose_config(COMPOSE_FILES[1], ENV_EXAMPLE).stdout)["services"]
    env = config["api-1"]["environment"]
    assert int(env["RAG_QDRANT_REPLICATION_FACTOR"]) >= 2
    assert int(env["RAG_QDRANT_SHARD_NUMBER"]) >= 3
    assert sum(name.startswith("qdrant-") for name in config) == 3


# --- rag up: building blocks ------------------------------------------------------------


def test_a_taken_port_is_named_with_the_setting_to_change(settings):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = settings.model_copy(update={"api_port": port})
        with pytest.raises(UpError) as caught:
            check_ports(taken, {"api_port": "the REST API", "ui_port": "the web UI"})
    message = str(caught.value)
    assert f"port {port} (the REST API)" in message and "RAG_API_PORT" in message
    assert "RAG_UI_PORT" not in message  # the free one is not blamed
    check_ports(taken, {"api_port": "the REST API"})  # free again once released


def test_admin_key_is_created_once_kept_private_and_reused(settings):
    token, created = ensure_admin_key(settings)
    path = admin_key_file(settings)
    assert created and path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = KeyStore.for_settings(settings).authenticate(token)
    assert key is not None and key.admin

    again, created_again = ensure_admin_key(settings)
    assert (again, created_again) == (token, False)


def test_admin_key_is_replaced_when_it_no_longer_works(settings):
    keys = KeyStore.for_settings(settings)
    token, _ = ensure_admin_key(settings)
    keys.revoke(ADMIN_KEY_NAME)
    replaced, created = ensure_admin_key(settings)
    assert created and replaced != token
    assert keys.authenticate(token) is None and keys.authenticate(replaced).admin

    # The file lost: a new key, and the old one (whose token nobody has any more) revoked.
    admin_key_file(settings).unlink()
    _, created = ensure_admin_key(settings)
    assert created and keys.authenticate(replaced) is None
    assert [k.name for k in keys.list() if not k.revoked] == [ADMIN_KEY_NAME]
    assert stat.S_IMODE(admin_key_file(settings).stat().st_mode) == 0o600


def child_env(settings: Settings) -> dict[str, str]:
    return dict(os.environ, RAG_DATA_DIR=str(settings.data_dir))


def blocking_child(settings: Settings, log: Path) -> Child:
    """A real long-running `rag` command: following a log file that never ends."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    (settings.run_dir / "llm-server.log").write_text("waiting\n")
    return Child("follower", ["llm", "logs", "-f"], log, child_env(settings))


def gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


def test_child_stop_ends_the_process_and_a_dead_child_is_reported_with_its_log(settings, tmp_path):
    child = blocking_child(settings, tmp_path / "follower.log")
    time.sleep(1.0)
    assert child.failure() is None
    child.stop()
    assert gone(child.proc.pid)

    failing = Child("key tool", ["keys", "revoke", "no-such-key"], tmp_path / "keys.log", child_env(settings))
    failing.proc.wait(120)
    report = failing.failure()
    assert report and "the key tool exited (code 1)" in report and str(tmp_path / "keys.log") in report
    assert "no-such-key" in report  # the tail of its log says what went wrong


def test_children_die_with_rag_up_even_when_it_is_killed(settings, tmp_path):
    """PR_SET_PDEATHSIG: a SIGKILLed `rag up` leaves no orphans behind."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from rag.settings import Settings\n"
        "from tests.unit.test_deploy import blocking_child\n"
        f"child = blocking_child(Settings(_env_file=None, data_dir={str(settings.data_dir)!r}), Path({str(tmp_path / 'f.log')!r}))\n"
        "print(child.proc.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        child_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert gone(child_pid), "the child outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
