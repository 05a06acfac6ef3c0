"""The one settings object.

Values come, highest priority first, from: keyword arguments, ``RAG_*`` environment
variables, a ``.env`` file, the YAML file named by ``RAG_CONFIG``, then the defaults
below. Every path the application writes lives under ``data_dir``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- Where things live -------------------------------------------------
    data_dir: Path = Field(Path("./var"), description="Root of every file the app writes.")

    # --- Vector store -------------------------------------------------------
    store_backend: Literal["edge", "local", "server"] = Field(
        "edge",
        description="edge = embedded Qdrant Edge engine (default); local = qdrant-client "
        "local mode (reference, small data only); server = Qdrant server or cluster.",
    )
    collection: str = "documents"
    qdrant_url: str | None = Field(None, description="Qdrant server URL; selects backend 'server'.")
    qdrant_api_key: SecretStr | None = None
    qdrant_prefer_grpc: bool = False
    qdrant_timeout: float = 30.0
    qdrant_shard_number: int = Field(1, ge=1)
    qdrant_replication_factor: int = Field(1, ge=1)
    qdrant_write_consistency_factor: int = Field(1, ge=1)
    hnsw_m: int = Field(16, ge=4)
    hnsw_ef_construct: int = Field(100, ge=4)
    hnsw_ef: int = Field(
        256, ge=1, description="Search-time beam width of the HNSW index (256: recall@10 0.975 at 100k "
        "points in `rag bench store`, 128 gave 0.91).")

    # --- Embedding ----------------------------------------------------------
    embed_model: str = Field(
        "", description="Path of a sentence-transformers model; empty = packaged all-MiniLM-L6-v2."
    )
    embed_dim: int = Field(
        0, ge=0, description="Vector length; 0 = what the model folder says (384 for MiniLM, 768 for all-mpnet-base-v2)."
    )
    embed_batch_size: int = Field(
        16, ge=1, description="Texts per model call. Texts are sorted by length first, so small batches "
        "pad little: on real mixed-length chunks 16 ran 10-15 % faster than 64 (int8, 2 AVX2 cores).")
    embed_precision: Literal["auto", "float32", "bfloat16", "int8"] = Field(
        "auto",
        description="auto = bfloat16 on CPUs with native bf16 (AVX-512 BF16/AMX), else int8 (ONNX "
        "Runtime, exported once into cache_dir); float32 = the reference (see rag.embedding).",
    )
    embed_threads: int = Field(0, ge=0, description="Torch threads for embedding; 0 = all cores.")

    # --- Ingestion ----------------------------------------------------------
    chunk_tokens: int = Field(200, ge=16, description="Chunk size in embedding-model tokens.")
    chunk_overlap: int = Field(32, ge=0)
    max_file_mb: float = Field(100.0, gt=0, description="Files larger than this are refused.")
    max_sheet_rows: int = Field(
        20_000, ge=1, description="Rows indexed per spreadsheet sheet; the rest is reported, not embedded."
    )
    default_groups: list[str] = Field(["everyone"], description="Groups of unmatched documents.")
    groups_file: Path | None = None

    # --- Retrieval ----------------------------------------------------------
    retrieval_mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    top_k: int = Field(5, ge=1, le=100, description="Sources per search or answer (each a page, slide, sheet or section).")
    passages_per_source: int = Field(
        1,
        ge=1,
        le=10,
        description="Passages of one page (slide, sheet or section) merged into its single source, best "
        "first, in reading order. Sources always come from distinct pages, so top_k sources cover top_k "
        "pages (FinanceBench evidence-page hit@10 0.575 -> 0.671, MiniLM, same store). More than 1 gives "
        "the model more of each page but a longer prompt: worth it with a larger context window.",
    )
    hybrid_fusion: Literal["relative", "rrf"] = Field(
        "relative",
        description="How hybrid mode fuses the dense and BM25 rankings: 'relative' scales each "
        "ranking's scores to 0..1 and adds them (weighted); 'rrf' is reciprocal rank fusion in the "
        "engine. Relative was better on both evaluation sets with equal weights: SciFact nDCG@10 "
        "0.728 vs 0.725, FinanceBench evidence-page hit@5 0.575 vs 0.534.",
    )
    prefetch_k: int = Field(50, ge=1, description="Candidates per branch before fusion.")
    rrf_k: int = Field(60, ge=1, description="RRF's k (only with hybrid_fusion='rrf').")
    hybrid_dense_weight: float = Field(1.0, ge=0, description="Fusion weight of the dense (MiniLM) ranking.")
    hybrid_sparse_weight: float = Field(1.0, ge=0, description="Fusion weight of the sparse (BM25) ranking.")
    score_threshold: float = Field(
        0.2,
        description="Minimum relevance: the cosine similarity (-1..1) between the question and the "
        "closest passage the asker may see. Below it the answer is 'not found' and the model is "
        "not called. Fused scores are ranks or scaled scores, not relevance, so every mode is gated on "
        "this. 0 = off. "
        "0.2 was calibrated with `rag eval qa --no-llm` (MiniLM): answerable questions scored 0.25 "
        "(samples) and 0.42 (FinanceBench) at the lowest; off-topic ones and questions about "
        "documents the asker may not read scored 0.09-0.13.",
    )
    name_check: bool = Field(
        True,
        description="Answer 'not found' without calling the model when the question names something "
        "(a company, product or place: 'Adobe', '3M', 'American Express') and no retrieved passage "
        "mentions any of those names in its text, title, heading or file name. Catches questions "
        "about documents the asker cannot see that retrieval matched to look-alike ones.",
    )
    max_question_chars: int = Field(
        4000, ge=16, description="Longer questions are refused with a clear error (not truncated)."
    )
    reranker_model: str | None = Field(None, description="Path of a cross-encoder; off when empty.")
    rerank_top_n: int = Field(20, ge=1)

    # --- Language model -----------------------------------------------------
    llm_base_url: str = Field("", description="OpenAI-compatible base URL; empty = local server.")
    llm_model: str = "smollm2"
    llm_api_key: SecretStr = SecretStr("local")
    llm_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for the model server's next bytes. On a CPU under "
        "load the first token can take over a minute (`rag bench api`: 60 s gave 503s at 25 clients).")
    llm_max_tokens: int = Field(256, ge=1)
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0)
    llm_sampling: dict[str, float | int | bool | str] = Field(
        default_factory=dict,
        description="Extra sampling parameters sent with every request, for servers that take them "
        '(vLLM: repetition_penalty, top_k, min_p, min_tokens...). JSON, e.g. RAG_LLM_SAMPLING=\'{"repetition_penalty": 1.1}\'.',
    )
    llm_context_window: int = Field(2048, ge=256)
    llm_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        "auto", description="Compute type of the local vLLM server. auto = bfloat16 on CPUs with native bf16 "
        "(AVX-512 BF16/AMX), else float32: emulated bf16 processed prompts 4.3x slower on an AVX2 CPU.")
    llm_retries: int = Field(2, ge=0)
    llm_managed: bool = Field(False, description="Start and stop the local vLLM server ourselves.")
    llm_host: str = "127.0.0.1"
    llm_port: int = 8001
    llm_startup_timeout: float = Field(600.0, gt=0)
    llm_venv_dir: Path | None = Field(
        None, description="Venv of the local vLLM server; empty = .venv-vllm in the project folder."
    )
    llm_model_dir: Path | None = Field(
        None,
        description="Model folder the local server loads; empty = <data_dir>/models/"
        "smollm2-135m-instruct, converted from the packaged GGUF by `rag llm install`.",
    )
    condense_questions: bool = Field(True, description="Rewrite follow-ups (one extra LLM call).")

    # --- API and UI ---------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_url: str = Field("", description="Where the UI finds the API; empty = api_host:api_port.")
    api_max_upload_mb: float = Field(100.0, gt=0)
    api_max_body_kb: int = Field(256, gt=0, description="Limit for JSON request bodies.")
    api_request_timeout: float = Field(
        300.0, gt=0, description="How long an answer may wait for a free slot (api_max_concurrent_answers).")
    api_keys_file: Path | None = Field(
        None, description="Where API keys (hashed) are kept; empty = <data_dir>/keys.json."
    )
    api_max_concurrent_answers: int = Field(
        8, ge=1, description="Answers the API generates at once; more wait for a turn (at most "
        "api_request_timeout), so the model server is not swamped. Raise it for a GPU server."
    )
    ui_host: str = "127.0.0.1"
    ui_port: int = 8501
    log_level: str = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings, dotenv_settings]
        config_file = os.environ.get("RAG_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"RAG_CONFIG points to a missing file: {config_file}")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        sources.append(file_secret_settings)
        return tuple(sources)

    # --- Derived paths and values (not settings of their own) --------------
    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def effective_store_backend(self) -> str:
        return "server" if self.qdrant_url else self.store_backend

    @property
    def effective_llm_base_url(self) -> str:
        return self.llm_base_url or f"http://{self.llm_host}:{self.llm_port}/v1"

    @property
    def effective_api_url(self) -> str:
        return self.api_url or f"http://{self.api_host}:{self.api_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings(...)`` instead)."""
    return Settings()
