"""The real packaged MiniLM through every precision: normalised vectors, agreement with
float32, order kept despite length sorting, the int8 model built once and cached."""

from __future__ import annotations

import numpy as np
import pytest

from rag.embedding import Embedder, EmbeddingError

TEXTS = [
    "Employees receive thirty days of paid annual leave each calendar year.",
    "The quarterly report shows revenue growth of twelve percent in Europe.",
    "To reset your password, open the security settings and choose a new one.",
    "Tents must be pitched on flat ground away from rivers and dead trees. " * 12,  # long
    "Backups run nightly at two o'clock and are kept for ninety days.",
    "x",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from rag.settings import Settings

    embedder = Embedder(Settings(data_dir=tmp_path_factory.mktemp("fp32"), embed_precision="float32", _env_file=None))
    return embedder.embed_documents(TEXTS)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_float32_matches_plain_sentence_transformers(reference):
    from sentence_transformers import SentenceTransformer

    from rag.embedding import default_model_path

    plain = SentenceTransformer(str(default_model_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    assert _cosines(reference, plain).min() > 0.99999


# int8 drifts most on very short texts ("x"); on SciFact it costs 0.002 nDCG@10 (see rag.embedding).
@pytest.mark.parametrize("precision, floor, mean_floor", [("bfloat16", 0.99, 0.999), ("int8", 0.97, 0.985),
                                                          ("auto", 0.97, 0.985)])
def test_fast_precisions_agree_with_float32(settings, reference, precision, floor, mean_floor):
    embedder = Embedder(settings.model_copy(update={"embed_precision": precision}))
    vectors = embedder.embed_documents(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = _cosines(vectors, reference)
    assert cosines.min() > floor and cosines.mean() > mean_floor
    assert embedder.precision in ("bfloat16", "int8")


def test_order_is_kept_and_queries_match_documents(settings):
    embedder = Embedder(settings)
    forward = embedder.embed_documents(TEXTS)
    backward = embedder.embed_documents(TEXTS[::-1])[::-1]
    assert _cosines(forward, backward).min() > 0.999  # int8 scales activations per batch: tiny drift only
    query = embedder.embed_query("how many vacation days do staff get?")
    assert query.shape == (384,)
    assert int(np.argmax(forward @ query)) == 0


def test_int8_model_is_built_once_into_the_cache_folder(settings, tmp_path):
    first = Embedder(settings.model_copy(update={"embed_precision": "int8"}))
    first.warm_up()
    cached = list((settings.cache_dir / "onnx").glob("*/model-int8.onnx"))
    assert len(cached) == 1 and cached[0].stat().st_size > 10_000_000
    other = settings.model_copy(update={"data_dir": tmp_path / "other", "embed_precision": "int8"})
    second = Embedder(other)
    second.warm_up()  # same process: copied, not exported again
    assert (other.cache_dir / "onnx" / cached[0].parent.name / "model-int8.onnx").read_bytes() == cached[0].read_bytes()


def test_an_export_killed_midway_leaves_nothing_behind(tmp_path):
    """Export scratch files (up to 260 MB) go next to the cache, and a dead exporter's are swept."""
    import os

    from rag.embedding import _remove_abandoned_exports

    dead = tmp_path / ".export-999999999-x1"  # above any pid_max: that process cannot exist
    alive = tmp_path / f".export-{os.getpid()}-x2"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"\0" * 1000)
    _remove_abandoned_exports(tmp_path)
    assert not dead.exists()
    assert (alive / "model.onnx").is_file()  # an export in progress is left alone


def test_token_facts_and_empty_input(settings):
    embedder = Embedder(settings)
    assert embedder.max_tokens == 254
    assert embedder.count_tokens("Hello world") == 2
    assert embedder.embed_documents([]).shape == (0, 384)


def test_missing_model_folder_is_a_plain_error(settings, tmp_path):
    with pytest.raises(EmbeddingError, match="does not exist"):
        Embedder(settings.model_copy(update={"embed_model": str(tmp_path / "nope")}))


def test_llama_index_adapter_uses_our_vectors(settings):
    from rag.embedding import LlamaEmbedding

    embedder = Embedder(settings)
    adapter = LlamaEmbedding(embedder=embedder)
    ours = embedder.embed_documents(TEXTS[:3])
    theirs = np.array(adapter.get_text_embedding_batch(TEXTS[:3]), dtype=np.float32)
    assert _cosines(ours, theirs).min() > 0.9999
    assert np.allclose(adapter.get_query_embedding(TEXTS[0]), embedder.embed_query(TEXTS[0]), atol=1e-5)


@pytest.fixture(scope="module")
def outlier_model(tmp_path_factory):
    """A one-layer MiniLM with four feed-forward neurons a thousand times too loud (and their
    outgoing weights a thousand times too quiet): a real model with the activation outliers
    that per-tensor int8 quantization cannot represent, like all-mpnet-base-v2's."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from rag.embedding import default_model_path

    folder = tmp_path_factory.mktemp("models") / "outlier-minilm"
    shutil.copytree(default_model_path(), folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    weights = {k: v for k, v in load_file(folder / "model.safetensors").items() if "layer." not in k or "layer.0." in k}
    layer = "encoder.layer.0."
    weights[layer + "intermediate.dense.weight"][:4] *= 1000.0
    weights[layer + "intermediate.dense.bias"][:4] = weights[layer + "intermediate.dense.bias"][:4].abs() * 1000.0
    weights[layer + "output.dense.weight"][:, :4] /= 1000.0
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_int8_is_refused_for_a_model_it_would_distort(settings, outlier_model):
    int8 = settings.model_copy(update={"embed_model": str(outlier_model), "embed_precision": "int8"})
    with pytest.raises(EmbeddingError, match=r"distorts .* RAG_EMBED_PRECISION=float32"):
        Embedder(int8).warm_up()
    folders = list((settings.cache_dir / "onnx").glob("outlier-minilm-*"))
    assert len(folders) == 1
    assert not (folders[0] / "model-int8.onnx").exists()  # nothing half-good is cached
    assert "cosine" in (folders[0] / "rejected.txt").read_text()
    with pytest.raises(EmbeddingError, match="distorts"):  # remembered: no second export
        Embedder(int8).warm_up()


def test_auto_falls_back_to_float32_when_int8_is_refused(settings, outlier_model, monkeypatch):
    import rag.embedding

    monkeypatch.setattr(rag.embedding, "cpu_has_native_bf16", lambda: False)  # auto means int8 here
    auto = Embedder(settings.model_copy(update={"embed_model": str(outlier_model), "embed_precision": "auto"}))
    vectors = auto.embed_documents(TEXTS)
    assert auto.precision == "float32"
    exact = Embedder(settings.model_copy(update={"embed_model": str(outlier_model), "embed_precision": "float32"}))
    assert _cosines(vectors, exact.embed_documents(TEXTS)).min() > 0.9999


def test_vector_size_comes_from_the_model_folder(settings, outlier_model, tmp_path):
    import json
    import shutil

    from rag.embedding import model_dimension, vector_size

    assert vector_size(settings) == 384
    assert vector_size(settings.model_copy(update={"embed_dim": 512})) == 512  # set explicitly: wins
    wide = tmp_path / "wide"
    shutil.copytree(outlier_model, wide)
    config = json.loads((wide / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps(config | {"hidden_size": 768}))
    assert model_dimension(wide) == 768
    modules = json.loads((wide / "modules.json").read_text())
    modules.append({"idx": 9, "name": "9", "path": "9_Dense", "type": "sentence_transformers.models.Dense"})
    (wide / "modules.json").write_text(json.dumps(modules))
    (wide / "9_Dense").mkdir()
    (wide / "9_Dense" / "config.json").write_text(json.dumps({"in_features": 768, "out_features": 256}))
    assert model_dimension(wide) == 256


@pytest.mark.parametrize("env", [{"RAG_EMBED_MODEL": "/no/such/model"}, {"RAG_TOP_K": "many"}])
def test_cli_states_a_bad_model_folder_or_setting_in_one_line(tmp_path, env):
    import os
    import subprocess
    import sys

    run_env = os.environ | {"RAG_DATA_DIR": str(tmp_path / "var")} | env
    for command in (["ingest", str(tmp_path)], ["search", "leave"]):
        out = subprocess.run([sys.executable, "-m", "rag.cli", *command], env=run_env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 1
        assert "Traceback" not in out.stderr and out.stderr.startswith("error: ")
        assert ("/no/such/model" in out.stderr) if "RAG_EMBED_MODEL" in env else ("RAG_TOP_K" in out.stderr)
