"""Private by construction: nothing may reach beyond loopback, and nothing defaults to OpenAI."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

from rag import netguard
from rag.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_guard_blocks_public_addresses_and_names():
    with pytest.raises(netguard.NetworkBlocked):
        socket.create_connection(("8.8.8.8", 443), timeout=1)
    with pytest.raises(netguard.NetworkBlocked):
        socket.getaddrinfo("example.com", 443)


def test_guard_allows_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=2)
    client.close()
    server.close()


def test_default_endpoints_are_loopback(tmp_path):
    s = Settings(data_dir=tmp_path, _env_file=None)
    for url in (s.effective_llm_base_url, s.effective_api_url):
        assert urlparse(url).hostname == "127.0.0.1"
    assert s.api_host == s.ui_host == s.llm_host == "127.0.0.1"
    assert s.qdrant_url is None and s.effective_store_backend == "edge"


def test_llama_index_uses_our_models_not_openai(tmp_path):
    from llama_index.core import Settings as LlamaSettings

    from rag.llama_setup import configure_llama_index

    configure_llama_index(Settings(data_dir=tmp_path, _env_file=None))
    llm = LlamaSettings.llm
    assert type(llm).__name__ == "PrivateOpenAILike"
    assert urlparse(llm.api_base).hostname == "127.0.0.1"
    assert type(LlamaSettings.embed_model).__name__ == "LlamaEmbedding"
    vec = LlamaSettings.embed_model.get_text_embedding("expense policy")
    assert len(vec) == 384


def test_stock_openai_client_cannot_reach_the_cloud():
    """If any code path fell back to the public OpenAI client, it would fail here, loudly."""
    import openai

    client = openai.OpenAI(api_key="sk-test", max_retries=0, timeout=2)
    with pytest.raises(openai.APIConnectionError) as info:
        client.models.list()
    assert "blocked" in repr(info.value.__cause__) or "only loopback" in repr(info.value.__cause__)


def test_no_source_file_names_a_public_model_endpoint():
    banned = ["api." + "openai.com", "huggingface" + ".co/", "hf" + ".co/"]
    offenders = [
        str(p.relative_to(REPO))
        for folder in ("rag", "ingest", "ui")
        for p in (REPO / folder).rglob("*.py")
        if any(b in p.read_text(encoding="utf-8") for b in banned)
    ]
    assert offenders == []
