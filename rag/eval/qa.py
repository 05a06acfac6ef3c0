"""`rag eval qa`: question answering end to end, on FinanceBench or on your own documents.

Documents go through the real ingestion pipeline (``RagService.ingest``) into a store in a
work folder (temporary unless ``--work-dir`` is given; ingestion is incremental, so a kept
work folder makes re-runs cheap). Then, per question:

* **evidence-page hit@k** (k = 1, 5, 10): a retrieved chunk comes from an expected file and
  (when the expectation names one) the expected page;
* **answer correctness**, without an LLM judge: numbers normalised and compared within 1 %,
  otherwise token F1 against the gold answer; both count only what the gold answer adds to
  the question (``rag.eval.metrics.answer_correctness``);
* **citation precision**: the share of cited sources that are an expected file/page;
* **refusal**: the question asked against documents that cannot answer it. Right
  behaviour is status ``not_found`` (relevance or name check) or a refusal in the answer
  (``rag.answer.is_refusal``); anything else *claims* an answer and counts against;
* latency percentiles of search and of the whole answer (and time to first token).

FinanceBench (``--dataset DIR``: ``pdfs/`` and ``data/questions.jsonl``, evidence pages
0-based): each question is restricted to its own filing with a document filter (the
filings are hundreds of pages, and several companies report the same line items).
The refusal probe asks it restricted to another company's filing.

Own documents (``--questions FILE --docs DIR``): see docs/evaluation.md for the format.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rag.eval.crossval import DEFAULT_FOLDS, HIT_KS, cross_validate, rank_metrics
from rag.eval.metrics import answer_correctness, latency_summary, mean
from rag.eval.retrieval import DatasetError, HybridParams, tune_grid
from rag.settings import Settings
# In a kept --work-dir: one JSON row per question, written as each is done.
ROWS_FILE = "eval-qa-rows.jsonl"
# How the retrieval modes are named in tables, charts and tuning settings.
MODE_LABELS = {"dense": "dense", "sparse": "BM25", "hybrid": "hybrid", "best_of_dense_and_sparse": "best of dense/BM25"}


@dataclass
class Expected:
    file: str  # file name, path relative to the docs folder, or stem (FinanceBench doc_name)
    page: int | None = None  # 1-based


@dataclass
class QAItem:
    id: str
    question: str
    answer: str | None = None
    expected: list[Expected] = field(default_factory=list)
    answerable: bool = True  # False: the right behaviour is to refuse
    restrict_to: list[str] | None = None  # files the question may search (None = all)
    refusal_probe: list[str] | None = None  # files that cannot answer it (asked as a second probe)
    groups: list[str] | None = None


# --- Loading ----------------------------------------------------------------------------------


def load_financebench(folder: Path) -> tuple[Path, list[QAItem]]:
    folder = Path(folder)
    questions = folder / "data" / "questions.jsonl"
    pdfs = folder / "pdfs"
    if not questions.is_file() or not pdfs.is_dir():
        raise DatasetError(f"{folder} is not a FinanceBench folder: it needs pdfs/ and data/questions.jsonl")
    rows = [json.loads(line) for line in questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    available = {p.stem for p in pdfs.glob("*.pdf")}
    company_docs: dict[str, list[str]] = {}
    for r in rows:
        company_docs.setdefault(r["company"], [])
        if r["doc_name"] in available and r["doc_name"] not in company_docs[r["company"]]:
            company_docs[r["company"]].append(r["doc_name"])
    companies = sorted(c for c, docs in company_docs.items() if docs)
    items = []
    for i, r in enumerate(rows):
        if r["doc_name"] not in available:
            continue
        # Another company's filing, chosen deterministically (the next company in name order).
        other = companies[(companies.index(r["company"]) + 1) % len(companies)]
        items.append(
            QAItem(
                id=str(r.get("financebench_id", i)),
                question=r["question"],
                answer=r.get("answer"),
                expected=[Expected(r["doc_name"], int(e["evidence_page_num"]) + 1) for e in r.get("evidence", [])],
                restrict_to=[r["doc_name"]],
                refusal_probe=[company_docs[other][0]] if other != r["company"] else None,
            )
        )
    return pdfs, items


def load_own_questions(path: Path) -> list[QAItem]:
    """YAML (a list) or JSONL (one object per line); format in docs/evaluation.md."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"the questions file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            rows = yaml.safe_load(text) or []
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except Exception as exc:
        raise DatasetError(f"{path} could not be read ({type(exc).__name__}: {exc})") from None
    if not isinstance(rows, list):
        raise DatasetError(f"{path} must hold a list of questions")
    items = []
    for i, r in enumerate(rows, 1):
        if not isinstance(r, dict) or not str(r.get("question") or "").strip():
            raise DatasetError(f"{path}: entry {i} needs a 'question'")
        expected = []
        for s in r.get("sources") or []:
            if isinstance(s, str):
                s = {"file": s}
            if not isinstance(s, dict) or not s.get("file"):
                raise DatasetError(f"{path}: entry {i}: each source needs a 'file'")
            expected.append(Expected(str(s["file"]), int(s["page"]) if s.get("page") is not None else None))
        answerable = bool(r.get("answerable", True))
        if answerable and not expected and not r.get("answer"):
            raise DatasetError(f"{path}: entry {i} needs 'sources' or an 'answer' (or 'answerable: false')")
        items.append(
            QAItem(
                id=str(r.get("id", i)),
                question=str(r["question"]),
                answer=str(r["answer"]) if r.get("answer") is not None else None,
                expected=expected,
                answerable=answerable,
                groups=r.get("groups"),
            )
        )
    return items


# --- Matching ------------------------------------------------------------------------------------


def source_matches(source: str, wanted: str) -> bool:
    """A stored source path matches an expected file given as a path, a name, or a stem."""
    src, want = PurePosixPath(source.replace("\\", "/")), PurePosixPath(wanted.replace("\\", "/"))
    return (
        src == want
        or str(src).endswith("/" + str(want))
        or (not want.suffix and src.stem == want.name)
    )


def matches(source: str, page: int | None, expected: list[Expected]) -> bool:
    return any(source_matches(source, e.file) and (e.page is None or e.page == page) for e in expected)


def first_hit_rank(chunks, expected: list[Expected]) -> int | None:
    for rank, c in enumerate(chunks, 1):
        if matches(c.source, c.page, expected):
            return rank
    return None


# --- Running --------------------------------------------------------------------------------------


def spread(items: list, n: int | None) -> list:
    """``n`` items evenly spread over the list, so a quick sample covers every filing, not the first few."""
    if not n or n >= len(items):
        return items
    return [items[i * len(items) // n] for i in range(n)]


def _doc_ids(sources: dict[str, str], files: list[str] | None) -> list[str] | None:
    """The stored documents (doc_id -> source) that are one of ``files``."""
    if files is None:
        return None
    return [d for d, source in sources.items() if any(source_matches(source, f) for f in files)]


def evaluate_qa(
    settings: Settings,
    items: list[QAItem],
    docs_dir: Path,
    *,
    work_dir: Path | None = None,
    limit: int | None = None,
    sample: int | None = None,
    use_llm: bool = True,
    refusal: bool = True,
    tune: bool = False,
    folds: int = DEFAULT_FOLDS,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    from rag import llm_server
    from rag.answer import is_refusal
    from rag.service import RagService

    items = spread(items[:limit] if limit else items, sample)
    if tune:
        tunable_questions(settings, items)  # fail before the slow ingestion
    temp = None
    if work_dir is None:
        temp = work_dir = Path(tempfile.mkdtemp(prefix="rag-eval-qa-"))
    # Own store and files in the work folder; the same model server and model tokenizer.
    run_settings = settings.model_copy(
        update={"data_dir": Path(work_dir), "llm_model_dir": llm_server.model_dir(settings).resolve()}
    )
    service = RagService(run_settings)
    # The embedder keeps the real data folder's model cache (e.g. the exported int8 model).
    from rag.embedding import Embedder, model_fingerprint

    service.embedder = Embedder(settings)
    saved = None
    try:
        progress(f"ingesting {docs_dir} (real pipeline) into {work_dir}")
        report = service.ingest([Path(docs_dir)])
        ingest = {"files": len(report.files), "failed": [f.model_dump() for f in report.failed],
                  "chunks_written": report.chunks_written, "seconds": report.seconds,
                  "pages_parsed": report.pages_parsed}
        progress(f"ingested: {report.summary()} in {report.seconds:.0f} s")
        sources = {d: info.source for d, info in service.documents().items()}
        # One untimed search first: the first one loads the embedding model and warms the store
        # (about 4 s when ingestion was skipped), which is start-up, not the latency of a search.
        service.search(items[0].question if items else "warm-up")
        tuning = tune_on_questions(service, sources, items, folds, progress) if tune else None
        rows = []
        # A kept work folder also keeps each question's row as soon as it is done: a long run
        # that is stopped loses nothing already measured.
        if temp is None:
            saved = (Path(work_dir) / ROWS_FILE).open("w", encoding="utf-8")
        for n, item in enumerate(items, 1):
            rows.append(_evaluate_item(service, sources, item, use_llm, refusal, is_refusal))
            row = rows[-1]
            if saved:
                saved.write(json.dumps(row) + "\n")
                saved.flush()
            correct = f" correct={row['correctness']['correct']}" if "correctness" in row else ""
            progress(f"[{n}/{len(items)}] hit@5={row['hit@5']} {row.get('status', '')}{correct}")
    finally:
        service.close()
        if saved:
            saved.close()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    measured_with = {k: getattr(settings, k) for k in (
        "retrieval_mode", "hybrid_fusion", "top_k", "prefetch_k", "rrf_k", "hybrid_dense_weight",
        "hybrid_sparse_weight", "score_threshold", "llm_model", "chunk_tokens")}
    measured_with |= {"embedding_model": model_fingerprint(service.embedder.model_path),
                      "embedding_precision": service.embedder.precision}
    return {"ingest": ingest, "summary": summarise(rows, use_llm), "questions": rows, "settings": measured_with,
            "tuning": tuning}


def tunable_questions(settings: Settings, items: list[QAItem]) -> list[QAItem]:
    """The questions ``--tune`` can learn from (they name an expected source), or why it can't run."""
    if settings.retrieval_mode != "hybrid":
        raise DatasetError(f"--tune tunes hybrid fusion, but RAG_RETRIEVAL_MODE is {settings.retrieval_mode}")
    scored = [item for item in items if item.expected]
    if len({item.expected[0].file for item in scored}) < 2:
        raise DatasetError("--tune needs questions whose expected sources are in at least two different documents "
                           "(cross-validation holds out whole documents)")
    return scored


def tune_on_questions(service, sources, items: list[QAItem], folds: int, progress) -> dict:
    """Cross-validated choice of the retrieval mode, hybrid weights and prefetch on these questions (``--tune``).

    Every candidate ranks every question with an expected source: the hybrid grid, and dense
    or BM25 alone (long, instruction-laden questions can throw BM25 off so far that fusing it
    costs more than it brings). `rag.eval.crossval` then says how well "pick the best on the
    other folds" does on held-out questions, which is the honest figure to compare with the
    configured setting.
    """
    from itertools import product

    from rag.retrieval import Retriever
    from rag.service import access_filter

    settings = service.settings
    scored = tunable_questions(settings, items)
    configured = HybridParams.from_settings(settings)
    candidates = {configured.describe(): ("hybrid", configured)}
    for k, w, prefetch in product(*tune_grid(configured.fusion, configured.rrf_k).values()):
        params = HybridParams(k, w, configured.sparse_weight, prefetch, configured.fusion)
        candidates.setdefault(params.describe(), ("hybrid", params))
    candidates |= {f"{MODE_LABELS[mode]} only": (mode, configured) for mode in ("dense", "sparse")}
    progress(f"tuning: {len(candidates)} settings x {len(scored)} questions, {folds}-fold cross-validation")
    ranks = {}
    for name, (mode, p) in candidates.items():
        retriever = Retriever(settings.model_copy(update={
            "rrf_k": p.rrf_k, "hybrid_dense_weight": p.dense_weight, "prefetch_k": p.prefetch}),
            service.store, service.embedder)
        ranks[name] = [
            first_hit_rank(retriever.search(item.question, access_filter(item.groups, _doc_ids(sources, item.restrict_to)),
                                            top_k=max(HIT_KS), mode=mode).chunks, item.expected)
            for item in scored
        ]
    result = cross_validate(ranks, [item.expected[0].file for item in scored], configured.describe(), folds)
    best_mode, best = candidates[result["best_on_all"]]
    better = result["held_out"]["mrr@10"] > result["configured"]["mrr@10"] and result["best_on_all"] != configured.describe()
    # Only a setting that wins on held-out questions is worth configuring.
    env = settings_env(best_mode, best) if better else {}
    result |= {
        "objective": "mrr@10",
        "questions": len(scored),
        "trials": [{"setting": name, "mode": mode, **(p.__dict__ if mode == "hybrid" else {}), **rank_metrics(ranks[name])}
                   for name, (mode, p) in candidates.items()],
        "recommended_env": env,
        "advice": ("Set " + " ".join(f"{k}={v}" for k, v in env.items())) if env
        else "Keep the configured setting: tuning does not beat it on held-out questions",
    }
    progress(f"tuning: held-out hit@5 {result['held_out']['page_hit@5']:.3f} vs configured "
             f"{result['configured']['page_hit@5']:.3f}; best on all questions: {result['best_on_all']}")
    return result


def settings_env(mode: str, params: HybridParams) -> dict[str, str]:
    """The environment variables that configure a tuning candidate."""
    if mode != "hybrid":
        return {"RAG_RETRIEVAL_MODE": mode}
    return {"RAG_HYBRID_DENSE_WEIGHT": str(params.dense_weight), "RAG_PREFETCH_K": str(params.prefetch),
            **({"RAG_RRF_K": str(params.rrf_k)} if params.fusion == "rrf" else {})}


def _evaluate_item(service, sources, item: QAItem, use_llm: bool, refusal: bool, is_refusal) -> dict:
    doc_ids = _doc_ids(sources, item.restrict_to)
    t = time.perf_counter()
    search = service.search(item.question, item.groups, top_k=max(HIT_KS), doc_ids=doc_ids)
    row: dict = {
        "id": item.id,
        "question": item.question,
        "gold": item.answer,
        "answerable": item.answerable,
        "expected": [f"{e.file}" + (f" p.{e.page}" if e.page else "") for e in item.expected],
        "search_s": time.perf_counter() - t,
        "best_relevance": search.best_relevance,
        "retrieved": [f"{c.source} p.{c.page}" if c.page else c.source for c in search.chunks],
    }
    rank = first_hit_rank(search.chunks, item.expected) if item.expected else None
    row["hit_rank"] = rank
    if item.expected:
        row["hit_rank_by_mode"] = _ranks_by_mode(service, item, doc_ids, search.mode, rank)
    for k in HIT_KS:
        row[f"hit@{k}"] = bool(rank and rank <= k) if item.expected else None
    if not use_llm:
        # The gates before the model (relevance, names) are measurable without it.
        row["gate"] = _gate(service, item, doc_ids)
        if refusal and item.refusal_probe:
            row["refusal_probe"] = {"documents": item.refusal_probe,
                                    "gate": _gate(service, item, _doc_ids(sources, item.refusal_probe))}
        return row
    answer = service.ask(item.question, item.groups, doc_ids=doc_ids)
    row.update(
        status=answer.status,
        answer=answer.answer,
        message=answer.message,
        citations=[f"[{c.n}] {c.source} p.{c.page}" + (" (inferred)" if c.inferred else "") for c in answer.citations],
        total_s=answer.timings.total,
        first_token_s=answer.timings.first_token,
        refused=answer.status == "not_found" or (answer.status == "answered" and is_refusal(answer.answer)),
    )
    if item.expected and answer.citations:
        good = [matches(c.source, c.page, item.expected) for c in answer.citations]
        row["citation_precision"] = sum(good) / len(good)
    if item.answer is not None and item.answerable:
        row["correctness"] = answer_correctness(answer.answer, item.answer, item.question)
    if refusal and item.refusal_probe:
        probe_ids = _doc_ids(sources, item.refusal_probe)
        probe = service.ask(item.question, item.groups, doc_ids=probe_ids)
        row["refusal_probe"] = {
            "documents": item.refusal_probe,
            "status": probe.status,
            "answer": probe.answer,
            "refused": probe.status == "not_found" or (probe.status == "answered" and is_refusal(probe.answer)),
            "best_relevance": max((c.relevance for c in probe.sources if c.relevance is not None), default=None),
            "total_s": probe.timings.total,
        }
    return row


def _ranks_by_mode(service, item: QAItem, doc_ids: list[str] | None, searched_mode: str, rank: int | None) -> dict:
    """The first expected page's rank under each retrieval mode (the configured one is already known).

    Side by side they tell a user what to change: when the better of dense and BM25 for each
    question (``best_of_dense_and_sparse`` in the summary) is not much above hybrid, no fusion
    weight will help, and a better embedding model (or a reranker) is what is missing.
    """
    from rag.retrieval import MODES

    return {mode: rank if mode == searched_mode else first_hit_rank(
        service.search(item.question, item.groups, top_k=max(HIT_KS), mode=mode, doc_ids=doc_ids).chunks,
        item.expected) for mode in MODES}


def page_hits_by_mode(rows: list[dict]) -> dict | None:
    """Hit@k and MRR@10 per retrieval mode, and for the better of dense and BM25 on each question."""
    ranked = [r["hit_rank_by_mode"] for r in rows if r.get("hit_rank_by_mode")]
    if not ranked:
        return None
    out = {mode: rank_metrics([r[mode] for r in ranked]) for mode in ranked[0]}
    better = [min((r[m] for m in ("dense", "sparse") if r[m]), default=None) for r in ranked]
    return out | {"best_of_dense_and_sparse": rank_metrics(better)}


def _gate(service, item: QAItem, doc_ids: list[str] | None) -> str | None:
    """Why the answerer would not call the model for ``item`` in ``doc_ids`` (None: it would)."""
    return service.answerer.not_found_message(service.search(item.question, item.groups, doc_ids=doc_ids))


def _share(values) -> float | None:
    values = [bool(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarise(rows: list[dict], use_llm: bool) -> dict:
    with_expected = [r for r in rows if r["expected"]]
    out: dict = {"questions": len(rows)}
    for k in HIT_KS:
        out[f"page_hit@{k}"] = _share(r[f"hit@{k}"] for r in with_expected)
    out["page_hit_by_mode"] = page_hits_by_mode(rows)
    out["search_latency"] = latency_summary([r["search_s"] for r in rows])
    if not use_llm:
        probes = [r["refusal_probe"] for r in rows if "refusal_probe" in r]
        out["gate_refusal_on_answerable"] = _share(r["gate"] is not None for r in rows if r["answerable"])
        out["gate_refusal_on_wrong_documents"] = _share(p["gate"] is not None for p in probes)
        out["gate_refusal_on_unanswerable"] = _share(r["gate"] is not None for r in rows if not r["answerable"])
        return out
    answered = [r for r in rows if r.get("status") == "answered"]
    scored = [r for r in rows if "correctness" in r]
    out["status"] = {s: sum(1 for r in rows if r.get("status") == s) for s in ("answered", "not_found", "llm_unavailable")}
    out["correct"] = _share(r["correctness"]["correct"] for r in scored)
    out["correct_numeric"] = _share(r["correctness"]["correct"] for r in scored if r["correctness"]["method"] == "numeric")
    out["mean_token_f1"] = mean([r["correctness"]["score"] for r in scored if r["correctness"]["method"] == "f1"]) if any(
        r["correctness"]["method"] == "f1" for r in scored) else None
    out["citation_precision"] = mean([r["citation_precision"] for r in rows if "citation_precision" in r]) if any(
        "citation_precision" in r for r in rows) else None
    out["answers_with_citations"] = _share(bool(r.get("citations")) for r in answered)
    out["answers_with_explicit_citations"] = _share(
        any("(inferred)" not in c for c in r.get("citations", [])) for r in answered)
    unanswerable = [r for r in rows if not r["answerable"]]
    out["refusal_on_unanswerable"] = _share(r["refused"] for r in unanswerable)
    probes = [r["refusal_probe"] for r in rows if "refusal_probe" in r]
    out["refusal_on_wrong_documents"] = _share(p["refused"] for p in probes)
    out["false_refusal_on_answerable"] = _share(r["refused"] for r in rows if r["answerable"])
    out["answer_latency"] = latency_summary([r["total_s"] for r in rows if "total_s" in r])
    out["first_token_latency"] = latency_summary([r["first_token_s"] for r in answered if r.get("first_token_s")])
    return out
