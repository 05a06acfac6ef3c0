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
