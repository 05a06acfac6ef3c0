"""Creating virtual environments and installing the CPU build of PyTorch into them.

Standard library only: the Makefile runs this with the system python before
anything else is installed (``python3 -m rag.venvs torch .venv``).

Why a fallback index: on this project's build machines the pinned CPU wheel of
torch lies in pip's local wheel folder, so the plain install is instant. On a
user's machine that wheel only exists on PyTorch's own CPU wheel index (PyPI's
Linux torch is the multi-GB CUDA build). We try the plain, local path first (it
fails fast when the wheel is not there) and only then ask the CPU index, which
is configurable with ``RAG_TORCH_INDEX_URL``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

TORCH_VERSION = "2.13.0"
DEFAULT_TORCH_INDEX_URL = "https://download.pytorch.org/whl/cpu"


def venv_python(venv_dir: Path) -> Path:
    return Path(venv_dir) / "bin" / "python"


def ensure_venv(venv_dir: Path) -> Path:
    """Create ``venv_dir`` with pip if it does not exist; return its python."""
    python = venv_python(venv_dir)
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(str(venv_dir))
    return python


def pip(python: Path, *args: str, log=None) -> int:
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT if log else None)


def has_torch(python: Path) -> bool:
    code = f"import torch,sys; sys.exit(0 if torch.__version__.startswith('{TORCH_VERSION}') else 1)"
    return subprocess.call([str(python), "-c", code], stderr=subprocess.DEVNULL) == 0


def install_torch_cpu(python: Path, log=None) -> None:
    """Install torch==TORCH_VERSION (CPU build) into the venv of ``python``."""
    if has_torch(python):
        return
    if pip(python, f"torch=={TORCH_VERSION}+cpu", log=log) == 0:
        return
    index = os.environ.get("RAG_TORCH_INDEX_URL", DEFAULT_TORCH_INDEX_URL)
    print(f"torch {TORCH_VERSION}+cpu not found locally; trying {index}", file=sys.stderr)
    if pip(python, f"torch=={TORCH_VERSION}", "--index-url", index, log=log) != 0:
        raise SystemExit(
            f"Could not install torch {TORCH_VERSION} (CPU). Set RAG_TORCH_INDEX_URL to a "
            "reachable PyTorch CPU wheel index or a local mirror."
        )


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "torch":
        print("usage: python -m rag.venvs torch VENV_DIR", file=sys.stderr)
        return 2
    install_torch_cpu(ensure_venv(Path(argv[1])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
