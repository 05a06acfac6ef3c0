"""`rag bench embed`: our embedder against plain float32 sentence-transformers on the same
chunks of real text, and both against the machine's matrix-multiply rate in the same run.

Reported: chunks/s and tokens/s of each path and their ratio (wall clock and per CPU-second,
the latter stays meaningful when other processes share the cores), achieved FLOP/s against
float32 and bfloat16 matmul FLOP/s, and the cosine agreement of our vectors (and of bfloat16)
with the float32 ones.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from rag.settings import Settings

CHUNK_TOKENS = 254  # + [CLS] + [SEP] = MiniLM's 256-token window, the worst (and usual) case


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = fn(*args)
    return result, time.perf_counter() - wall, _cpu_seconds() - cpu


# --- the text ---------------------------------------------------------------------------------
def _documents(data: Path | None):
    """Real prose: a BEIR corpus.jsonl or the .txt/.md files of --data, else Python's own docs."""
    if data is None:
        from pydoc_data.topics import (
            topics,  # the text of `help()`, shipped with every Python
        )

        yield from topics.values()
        return
    corpus = data / "corpus.jsonl"
    if corpus.is_file():
        with corpus.open() as lines:
            for line in lines:
                record = json.loads(line)
                yield f"{record.get('title', '')}. {record.get('text', '')}"
        return
    for path in sorted(data.rglob("*")):
        if path.suffix.lower() in (".txt", ".md") and path.is_file():
            yield path.read_text(errors="replace")


def make_chunks(tokenizer, n: int, data: Path | None, tokens: int = CHUNK_TOKENS) -> list[str]:
    """`n` chunks of exactly `tokens` model tokens, cut from consecutive real text."""
    chunks: list[str] = []
    carry = ""
    for document in _documents(data):
        text = f"{carry} {' '.join(document.split())}".strip()
        offsets = tokenizer.encode(text, add_special_tokens=False).offsets
        start = 0
        while start + tokens <= len(offsets) and len(chunks) < n:
            chunks.append(text[offsets[start][0] : offsets[start + tokens - 1][1]])
            start += tokens
        if len(chunks) >= n:
            return chunks
        carry = text[offsets[start][0] :] if start < len(offsets) else ""
    if not chunks:
        raise ValueError("no text found for the benchmark (give --data a BEIR folder or a folder of .txt/.md)")
    while len(chunks) < n:  # a small source: reuse it (timings stay valid, vectors repeat)
        chunks.append(chunks[len(chunks) % max(1, len(chunks))])
    return chunks


# --- the model's arithmetic ---------------------------------------------------------------------
def flops_per_token(config: dict, seq_len: int) -> float:
    """Forward-pass FLOPs per token of a BERT encoder (1 multiply-add = 2 FLOPs).

    Per layer and token: Q, K, V and output projections 4 x 2·d², the feed-forward block
    2 x 2·d·d_ff (that is 2 x the layer's weights), plus attention itself: scores Q·Kᵀ and
    the weighted sum over V, each 2·n·d for a sequence of n tokens. Embedding lookups,
    LayerNorm, GELU and softmax are O(d) per token and left out (under 1%).
    For MiniLM-L6 (d=384, d_ff=1536, 6 layers) at n=256: 6 x (3.54 M + 0.39 M) = 23.6 MFLOP.
    """
    d = config["hidden_size"]
    d_ff = config["intermediate_size"]
    layers = config["num_hidden_layers"]
    return layers * (8 * d * d + 4 * d * d_ff + 4 * seq_len * d)


def matmul_flops(dtype_name: str, seconds: float = 1.0) -> float:
    """Measured FLOP/s of a torch matrix multiply shaped like the model's feed-forward layer."""
    import torch

    dtype = getattr(torch, dtype_name)
    m, k, n = 4096, 384, 1536  # (batch x tokens) x d times d x d_ff
    a = torch.randn(m, k).to(dtype)
    b = torch.randn(k, n).to(dtype)
    with torch.inference_mode():
        a @ b  # warm-up (kernel selection, page faults)
        reps, start = 0, time.perf_counter()
        while True:
            a @ b
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and reps >= 3:
                return 2 * m * k * n * reps / elapsed


# --- the benchmark -------------------------------------------------------------------------------
def run_embed_benchmark(settings: Settings, chunks: int = 2000, data: Path | None = None,
                        bf16_sample: int = 64) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.embedding import (
        Embedder,
        cpu_has_native_bf16,
        load_tokenizer,
        model_path_for,
    )

    model_path = model_path_for(settings)
    config = json.loads((model_path / "config.json").read_text())
    load_before = os.getloadavg()
    texts = make_chunks(load_tokenizer(model_path), chunks, data)
    token_counts = [len(e.ids) + 2 for e in load_tokenizer(model_path).encode_batch(texts, add_special_tokens=False)]
    tokens = sum(token_counts)
    per_token = flops_per_token(config, int(np.mean(token_counts)))

    ours = Embedder(settings)
    _, warm_s, _ = _timed(ours.warm_up)
    ours_vectors, ours_s, ours_cpu = _timed(ours.embed_documents, texts)

    plain = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
    with torch.inference_mode():
        plain_vectors, plain_s, plain_cpu = _timed(
            lambda: plain.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False))

    fp32_gemm = matmul_flops("float32")
    bf16_gemm = matmul_flops("bfloat16")

    agreement = np.sum(ours_vectors * plain_vectors, axis=1)
    # bfloat16 agreement on a sample (on CPUs without native bf16 it is slow, see rag.embedding).
    sample = texts[:bf16_sample]
    bf16 = Embedder(settings.model_copy(update={"embed_precision": "bfloat16"}))
    bf16.warm_up()
    bf16_vectors, bf16_s, _ = _timed(bf16.embed_documents, sample)
    bf16_agreement = np.sum(bf16_vectors * plain_vectors[: len(sample)], axis=1)

    def path(seconds: float, cpu: float) -> dict:
        achieved = tokens * per_token / seconds
        return {
            "seconds": round(seconds, 2),
            "chunks_per_s": round(len(texts) / seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1),
            "chunks_per_cpu_s": round(len(texts) / max(cpu, 1e-9), 3),
            "achieved_gflop_s": round(achieved / 1e9, 1),
            "share_of_fp32_matmul": round(achieved / fp32_gemm, 3),
            "share_of_bf16_matmul": round(achieved / bf16_gemm, 3),
        }

    return {
        "chunks": len(texts),
        "tokens_per_chunk": round(tokens / len(texts), 1),
        "text": str(data) if data else "python pydoc topics",
        "threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "mflop_per_token": round(per_token / 1e6, 2),
        "matmul_gflop_s": {"float32": round(fp32_gemm / 1e9, 1), "bfloat16": round(bf16_gemm / 1e9, 1)},
        "ours": {"precision": ours.precision, "warm_up_s": round(warm_s, 1), **path(ours_s, ours_cpu)},
        "plain_sentence_transformers_fp32": path(plain_s, plain_cpu),
        "ratio_ours_over_plain": {
            "wall": round(plain_s / ours_s, 2),
            "per_cpu_second": round(plain_cpu / max(ours_cpu, 1e-9), 2),
        },
        "cosine_ours_vs_fp32": {"min": round(float(agreement.min()), 5), "mean": round(float(agreement.mean()), 5)},
        "bfloat16_sample": {
            "chunks": len(sample),
            "chunks_per_s": round(len(sample) / bf16_s, 2),
            "cosine_vs_fp32": {"min": round(float(bf16_agreement.min()), 5),
                               "mean": round(float(bf16_agreement.mean()), 5)},
        },
    }
