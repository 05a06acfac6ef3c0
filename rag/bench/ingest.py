"""`rag bench ingest --data DIR`: our ingestion against the naive llama-index path on the
same files, each in its own child process (so resident memory is its own).

Ours: the real pipeline into a throwaway Edge store (files/s, pages/s, chunks/s, tokens
embedded/s, time per stage, achieved FLOP/s of the embedding stage against the machine's
matrix-multiply rate measured in the same run).

Naive: SimpleDirectoryReader -> VectorStoreIndex.from_documents with HuggingFaceEmbedding
(the same packaged MiniLM) into qdrant-client local mode, all defaults. Its nodes are cut to
the model's 256-token window when embedded, so we count the tokens it really embeds.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from rag.bench.child import run_in_child


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_ours(data: list[str]) -> dict:
    from rag.service import RagService
    from rag.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        service = RagService(Settings(data_dir=Path(tmp), _env_file=None))
        service.embedder.warm_up()
        t = time.perf_counter()
        report = service.ingest([Path(d) for d in data])
        wall = time.perf_counter() - t
        service.close()
    ok = [f for f in report.files if f.status == "added"]
    stages = report.stages.model_dump()
    arithmetic = _embed_arithmetic(report, stages["embed"])
    return {
        "path": "ours",
        "wall_s": round(wall, 2),
        "files_ok": len(ok),
        "files_failed": len(report.failed),
        "failed_by_reason": _reasons(report.failed),
        "files_per_s": round(len(report.files) / wall, 2),
        "pages": report.pages_parsed,
        "pages_per_s": round(report.pages_parsed / wall, 1),
        "chunks": report.chunks_written,
        "chunks_per_s": round(report.chunks_written / wall, 1),
        "tokens_embedded": report.tokens_embedded,
        "tokens_embedded_per_s": round(report.tokens_embedded / wall, 1),
        "embed_stage_tokens_per_s": round(report.tokens_embedded / max(stages["embed"], 1e-9), 1),
        "stage_seconds": {k: round(v, 2) for k, v in stages.items()},
        "embedding_arithmetic": arithmetic,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _embed_arithmetic(report, embed_seconds: float) -> dict:
    """Achieved FLOP/s of the embedding stage against this machine's matmul rates, same run."""
    import json

    from rag.bench.embed import flops_per_token, matmul_flops
    from rag.embedding import default_model_path

    config = json.loads((default_model_path() / "config.json").read_text())
    chunks = max(report.embeddings_computed, 1)
    mean_len = report.tokens_embedded / chunks + 2  # + [CLS] and [SEP]
    achieved = report.tokens_embedded * flops_per_token(config, int(mean_len)) / max(embed_seconds, 1e-9)
    f32, bf16 = matmul_flops("float32"), matmul_flops("bfloat16")
    return {
        "achieved_gflops": round(achieved / 1e9, 1),
        "matmul_float32_gflops": round(f32 / 1e9, 1),
        "matmul_bfloat16_gflops": round(bf16 / 1e9, 1),
        "share_of_float32_matmul": round(achieved / f32, 3),
        "share_of_bfloat16_matmul": round(achieved / bf16, 3),
    }


def _reasons(failed) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in failed:
        key = (f.reason or "").split("(")[0].strip()[:80]
        out[key] = out.get(key, 0) + 1
    return out


def _files_under(folders: list[str]) -> list[str]:
    # Hidden parts are judged below each folder: "../shared" must not hide everything.
    return sorted(str(p) for d in folders for p in Path(d).rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(d).parts))


def run_naive(data: list[str]) -> dict:
    from llama_index.core import Settings as LlamaSettings
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from rag.embedding import default_model_path
    from rag.llm import make_llm
    from rag.settings import Settings

    settings = Settings(_env_file=None)
    LlamaSettings.llm = make_llm(settings)  # never the OpenAI default, even in a baseline
    embed = HuggingFaceEmbedding(model_name=str(default_model_path()), device="cpu")
    LlamaSettings.embed_model = embed
    tokenizer = embed._model.tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        reader = SimpleDirectoryReader(input_files=_files_under(data), raise_on_error=False)
        try:
            docs = reader.load_data(show_progress=False)
        except Exception as exc:  # noqa: BLE001 - the naive path has no per-file isolation
            return {"path": "naive llama-index", "crashed": f"{type(exc).__name__}: {exc}"[:300]}
        client = QdrantClient(path=str(Path(tmp) / "q"))
        store = QdrantVectorStore(client=client, collection_name="naive")
        index = VectorStoreIndex.from_documents(
            docs, storage_context=StorageContext.from_defaults(vector_store=store), show_progress=False
        )
        wall = time.perf_counter() - t
        nodes = list(index.docstore.docs.values()) or _nodes_from_store(client)
        client.close()
    texts = [n.get_content() for n in nodes] if nodes else []
    # Text tokens, without [CLS]/[SEP], as ours are counted; the window holds 254 of them.
    token_counts = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    embedded = sum(min(c, 254) for c in token_counts)
    markup = sum(1 for t in texts if t.count("<") > 20 and t.count(">") > 20)
    return {
        "path": "naive llama-index",
        "wall_s": round(wall, 2),
        "documents": len(docs),
        "chunks": len(texts),
        "chunks_per_s": round(len(texts) / wall, 1),
        "tokens_in_nodes": sum(token_counts),
        "tokens_embedded": embedded,
        "share_of_text_embedded": round(embedded / max(sum(token_counts), 1), 3),
        "tokens_embedded_per_s": round(embedded / wall, 1),
        "nodes_with_markup": markup,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _nodes_from_store(client) -> list:
    from llama_index.core.schema import TextNode

    records, _ = client.scroll("naive", limit=1_000_000, with_payload=True)
    import json

    out = []
    for r in records:
        content = json.loads(r.payload.get("_node_content", "{}"))
        out.append(TextNode(text=content.get("text", "")))
    return out


def run_ingest_benchmark(data: list[Path], naive: bool = True) -> dict:
    folders = [str(d) for d in data]
    ours = run_in_child(run_ours, folders)
    result: dict = {"data": folders, "files": len(_files_under(folders)), "ours": ours}
    if naive:
        base = run_in_child(run_naive, folders)
        result["naive_llama_index"] = base
        if "wall_s" in base:
            result["ratios"] = {
                "wall_time_naive_over_ours": round(base["wall_s"] / ours["wall_s"], 2),
                "tokens_embedded_per_s_ours_over_naive": round(
                    ours["tokens_embedded_per_s"] / max(base["tokens_embedded_per_s"], 1e-9), 2),
            }
    return result
