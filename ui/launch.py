"""How `rag ui` starts Streamlit: the command line and environment, in one place."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rag.settings import Settings

APP = Path(__file__).with_name("app.py")


def streamlit_command(settings: Settings, host: str | None = None, port: int | None = None) -> list[str]:
    options = {
        "server.address": host or settings.ui_host,
        "server.port": port or settings.ui_port,
        "server.headless": "true",
        "server.fileWatcherType": "none",  # a product, not a dev loop: no reload watchers
        "server.maxUploadSize": max(1, round(settings.api_max_upload_mb)),  # MB, like the API's limit
        "browser.gatherUsageStats": "false",  # private: nothing leaves the machine
        "client.toolbarMode": "viewer",  # users get no developer menu
        "client.showErrorDetails": "none",  # never a traceback in the browser (they go to the log)
        "theme.base": "light",
        "theme.primaryColor": "#2f5bd3",
    }
    return [sys.executable, "-m", "streamlit", "run", str(APP), *(f"--{k}={v}" for k, v in options.items())]


def streamlit_env(settings: Settings) -> dict[str, str]:
    """The UI finds the API through RAG_API_URL (the API key comes from the user, never from here)."""
    return dict(os.environ, RAG_API_URL=settings.effective_api_url)
