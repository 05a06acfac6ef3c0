"""Session-wide test setup: offline, loopback only, every test with its own data folder."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# A stray OpenAI key in the environment must not make anything work by accident.
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)

import pytest  # noqa: E402

from rag import netguard  # noqa: E402

netguard.install()


@pytest.fixture
def settings(tmp_path):
    """Settings with a private data folder under the test's tmp_path."""
    from rag.settings import Settings

    return Settings(data_dir=tmp_path / "var", _env_file=None)


def find_free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LLMServerHandle:
    """The session's real vLLM server: its URL and the settings that reach it."""

    def __init__(self, settings):
        self.settings = settings
        self.base_url = settings.effective_llm_base_url

    def configure(self, settings):
        """A copy of ``settings`` (e.g. a test's own, with its own data folder) that uses this server."""
        keys = ("llm_host", "llm_port", "llm_base_url", "llm_model", "llm_model_dir", "llm_venv_dir")
        return settings.model_copy(update={key: getattr(self.settings, key) for key in keys})


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """Start the real local vLLM server once per session; stop it at the end (also after failures).

    It reuses the model `rag llm install` converted into ./var/models (``make test``
    runs that first); without one it converts a private copy for the session.
    """
    from rag import llm_server as serving
    from rag.settings import Settings

    data_dir = tmp_path_factory.mktemp("llm-server") / "var"
    shared_model = serving.model_dir(Settings(_env_file=None)).resolve()
    settings = Settings(
        _env_file=None, data_dir=data_dir, llm_base_url="", llm_port=find_free_port(), llm_model_dir=shared_model
    )
    if serving.model_problem(settings):
        settings = settings.model_copy(update={"llm_model_dir": None})
    serving.install(settings)
    try:
        serving.start(settings, tied_to_caller=True)  # a killed test session takes it along
        yield LLMServerHandle(settings)
    finally:
        serving.stop(settings)
