"""Point llama-index's global Settings at our own models, explicitly.

llama-index silently falls back to OpenAI's cloud models when `Settings.llm` or
`Settings.embed_model` is unset (llama_index #17434). We set both, and the tokenizer,
before any llama-index component is built.
"""

from __future__ import annotations

from llama_index.core import Settings as LlamaSettings

from rag.settings import Settings


def configure_llama_index(settings: Settings, embedder=None) -> None:
    from rag.embedding import Embedder, LlamaEmbedding
    from rag.llm import make_llm

    embedder = embedder or Embedder(settings)
    LlamaSettings.llm = make_llm(settings)
    LlamaSettings.embed_model = LlamaEmbedding(embedder=embedder)
    LlamaSettings.chunk_size = settings.chunk_tokens
    LlamaSettings.chunk_overlap = settings.chunk_overlap
