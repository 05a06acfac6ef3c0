"""`rag up`: the whole system on one machine, in the foreground (what `make run` starts).

Order matters:

1. check the ports first, so a clash is reported in a second rather than after minutes;
2. ingest the documents (the sample corpus by default) in a child `rag ingest`, which
   closes the embedded store when done: the API process must be its only opener;
3. make or re-read the admin key (``<data_dir>/admin-key.txt``, mode 0600);
4. make sure the model server answers (start the local vLLM server when it is ours);
5. start `rag serve` and `rag ui` as child processes and wait until both answer;
6. stay in the foreground; Ctrl-C, SIGTERM or a dying child stops the UI, the API and
   the vLLM server this run started, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import httpx

from rag import llm_server
from rag.keys import KeyStore
from rag.lifetime import die_with_parent
from rag.settings import Settings

ADMIN_KEY_NAME = "rag-up-admin"
ADMIN_KEY_FILE = "admin-key.txt"
CHILD_STARTUP_TIMEOUT = 300.0  # loading the embedding model and opening the store, on a busy 2-core box
STOP_TIMEOUT = 15.0
INGEST_SOME_FAILED = 2  # `rag ingest` exit status when some files failed (the rest is stored)


class UpError(RuntimeError):
    """`rag up` cannot go on; the message says why and what to do."""


def say(message: str) -> None:
    print(f">> {message}", flush=True)


# --- Ports ---------------------------------------------------------------------------


def port_problem(settings: Settings, field: str, what: str) -> str | None:
    """Why the port in setting ``field`` cannot be used, or None when it is free."""
    host = getattr(settings, field.replace("_port", "_host"))
    port = getattr(settings, field)
    if not llm_server.port_in_use(host, port):
        return None
    return (
        f"port {port} ({what}) is already in use by another program; stop that program "
        f"or choose a free port with RAG_{field.upper()}=<port>"
    )


def check_ports(settings: Settings, fields: dict[str, str]) -> None:
    """Raise UpError naming every taken port (field -> what it is for)."""
    problems = [p for field, what in fields.items() if (p := port_problem(settings, field, what))]
    if problems:
        raise UpError("; ".join(problems))


def connect_host(host: str) -> str:
    """Where to reach a server bound to ``host`` from this machine."""
    return "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host


# --- Admin key -----------------------------------------------------------------------


def admin_key_file(settings: Settings) -> Path:
    return settings.data_dir / ADMIN_KEY_FILE


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600), even if the file existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def ensure_admin_key(settings: Settings) -> tuple[str, bool]:
    """The admin token kept in admin-key.txt, and whether it was created now.

    A token that no longer works (revoked, or the key file was deleted) is replaced, and
    the old `rag up` admin key, if still active, is revoked: its token is lost anyway.
    """
    keys = KeyStore.for_settings(settings)
    path = admin_key_file(settings)
    if path.exists():
        token = path.read_text().strip()
        key = keys.authenticate(token)
        if key is not None and key.admin:
            os.chmod(path, 0o600)
            return token, False
    for key in keys.list():
        if key.name == ADMIN_KEY_NAME and not key.revoked:
            keys.revoke(key.id)
    _, token = keys.create(ADMIN_KEY_NAME, None, admin=True)
    write_private(path, token + "\n")
    return token, True


# --- Child processes -----------------------------------------------------------------


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    with open(path, errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines))


class Child:
    """A server started by `rag up`: its own process group, its own log file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.log = name, log
        log.parent.mkdir(parents=True, exist_ok=True)
        if log.exists():
            log.replace(log.with_suffix(".log.1"))  # keep the previous run's log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rag.cli", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # our Ctrl-C handling decides the stop order
                preexec_fn=die_with_parent,  # noqa: PLW1509 (rag up starts no threads)
            )

    def failure(self) -> str | None:
        """Why the child is gone (with its last log lines), or None while it runs."""
        code = self.proc.poll()
        if code is None:
            return None
        return f"the {self.name} exited (code {code}); last lines of {self.log}:\n{tail(self.log)}"

    def wait_http(self, url: str, timeout: float = CHILD_STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                problem = self.failure()
                if problem:
                    raise UpError(problem)
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(url).status_code == 200:
                        return
                time.sleep(0.5)
        raise UpError(f"the {self.name} did not answer at {url} within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Anything the child left in its group (e.g. a server's workers) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def child_env(settings: Settings) -> dict[str, str]:
    """The children inherit our environment; the UI is told where the API listens."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not settings.api_url:
        env["RAG_API_URL"] = api_url(settings)
    return env


def api_url(settings: Settings) -> str:
    return settings.api_url or f"http://{connect_host(settings.api_host)}:{settings.api_port}"


def ui_url(settings: Settings) -> str:
    return f"http://{connect_host(settings.ui_host)}:{settings.ui_port}"


# --- Steps ---------------------------------------------------------------------------


def samples_dir() -> Path:
    """The shipped sample corpus: ``documents/`` and, beside it (not inside: it is no document), ``groups.yaml``."""
    return llm_server.project_dir() / "samples"


def start_llm(settings: Settings) -> bool:
    """Make the model server answer; True when this run started it (and must stop it)."""
    if not llm_server.is_local(settings):
        say(f"Model server: using {settings.effective_llm_base_url} (RAG_LLM_BASE_URL)")
        if not llm_server.probe(settings.effective_llm_base_url, settings.llm_api_key.get_secret_value())["up"]:
            say("   warning: nothing answers there yet; questions will fail until it does")
        return False
    if llm_server.status(settings)["up"]:
        say(f"Model server: already running at {settings.effective_llm_base_url}")
        return False
    check_ports(settings, {"llm_port": "the local vLLM server"})
    say("Model server: starting the local vLLM CPU server (1 to 3 minutes)")
    started = time.monotonic()
    try:
        llm_server.ensure_running(settings, tied_to_caller=True)  # a killed `rag up` takes it along
    except llm_server.LLMServerError as exc:
        raise UpError(str(exc)) from None
    say(f"Model server: up at {settings.effective_llm_base_url} after {time.monotonic() - started:.0f} s")
    return True


def ingest(paths: list[Path], groups_file: Path | None, env: dict[str, str]) -> None:
    """Run `rag ingest` as a child: it opens and closes the store before the API takes it."""
    args = [sys.executable, "-m", "rag.cli", "ingest", *map(str, paths)]
    if groups_file:
        args += ["--groups-file", str(groups_file)]
    say(f"Ingesting {', '.join(map(str, paths))} (only new or changed files cost time)")
    code = subprocess.call(args, env=env)
    if code == INGEST_SOME_FAILED:
        say("   warning: some files could not be ingested (see the table above); going on without them")
    elif code != 0:
        raise UpError(f"ingesting {', '.join(map(str, paths))} failed (exit code {code}); see the message above")


def banner(settings: Settings, token: str, created: bool, children: list[Child]) -> str:
    key_path = admin_key_file(settings)
    api = api_url(settings)
    lines = [
        "",
        "The system is up.",
        f"  Web UI:     {ui_url(settings)}",
        f"  REST API:   {api}   (reference: {api}/docs)",
        f"  Admin key:  {token}",
        f"              {'created now and ' if created else ''}kept in {key_path} (readable by you only)",
        "",
        "Ask from another terminal:",
        f"  curl -s {api}/v1/query -H \"Authorization: Bearer $(cat {key_path})\" \\",
        "       -H 'Content-Type: application/json' \\",
        "       -d '{\"question\": \"How many days of annual leave do employees get?\"}'",
        "",
        "Logs: " + ", ".join(str(c.log) for c in children) + f", {llm_server.log_file(settings)}",
        "Press Ctrl-C to stop everything.",
    ]
    return "\n".join(lines)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def up(settings: Settings, *, manage_llm: bool = True, paths: list[Path] | None = None,
       groups_file: Path | None = None) -> int:
    """Run the whole system until interrupted; returns the exit status."""
    if paths is None:
        paths, groups_file = [samples_dir() / "documents"], groups_file or samples_dir() / "groups.yaml"
    missing = [p for p in [*paths, groups_file] if p is not None and not Path(p).exists()]
    if missing:
        raise UpError(f"{missing[0]} does not exist")
    # Ctrl-C, SIGTERM (e.g. from a service manager) and a closed terminal all stop everything.
    # SIGINT explicitly: a shell starting us in the background hands it down ignored.
    # SIGHUP only when not ignored: under nohup, logging out must not stop the system.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _raise_interrupt)

    children: list[Child] = []
    llm_started = False
    try:
        check_ports(settings, {"api_port": "the REST API", "ui_port": "the web UI"})
        env = child_env(settings)
        # Ingestion first: it needs no model server, and a problem with the documents shows
        # before the minute-long vLLM start rather than after it.
        ingest(paths, groups_file, env)
        token, created = ensure_admin_key(settings)
        if manage_llm:
            llm_started = start_llm(settings)
        else:
            say(f"Model server: not managed (--no-llm); the app uses {settings.effective_llm_base_url}")

        say(f"Starting the REST API on {api_url(settings)}")
        api = Child("REST API", ["serve"], settings.run_dir / "api.log", env)
        children.append(api)
        api.wait_http(f"{api_url(settings)}/healthz")
        say(f"Starting the web UI on {ui_url(settings)}")
        ui = Child("web UI", ["ui"], settings.run_dir / "ui.log", env)
        children.append(ui)
        ui.wait_http(f"{ui_url(settings)}/_stcore/health")

        print(banner(settings, token, created, children), flush=True)
        while True:
            for child in children:
                problem = child.failure()
                if problem:
                    raise UpError(problem)
            time.sleep(1.0)
    except KeyboardInterrupt:
        print(flush=True)
        say("Stopping")
        return 0
    finally:
        # Ignore further Ctrl-C while cleaning up: a half-done stop would leave orphans.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):  # UI first, then the API
            child.stop()
            say(f"Stopped the {child.name}")
        if llm_started:
            llm_server.stop(settings)
            say("Stopped the vLLM server")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
