"""Retrieval against the real embedder and the real Qdrant Edge store."""

from __future__ import annotations

import pytest

from rag.retrieval import GAP, QuestionError, Retriever
from rag.service import RagService, access_filter
from rag.settings import Settings
from tests.integration.qa_corpus import ingest_corpus, write_corpus


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    settings = Settings(_env_file=None, data_dir=root / "var")
    svc = RagService(settings)
    ingest_corpus(svc, write_corpus(root / "docs"))
    yield svc
    svc.close()


def finance_ids(service) -> set[str]:
    return set(service.documents(["finance"]))


def test_hybrid_search_returns_the_passage_with_page_heading_and_snippet(service):
    result = service.search("Who is the chief executive officer of Northwind Traders?", top_k=3)
    top = result.chunks[0]
    assert result.mode == "hybrid"
    assert top.source.endswith("annual-report.pdf")
    assert top.page == 3
    assert "Marta Lindqvist" in top.text
    assert "executive" in top.snippet.lower()
    assert top.doc_id and top.groups == ["finance"]
    assert -1.0 <= top.relevance <= 1.0
    assert result.timings.embed > 0 and result.timings.retrieve > 0

    markdown = service.search("managed switch with 48 ports", top_k=1).chunks[0]
    assert markdown.source.endswith("products.md")
    assert markdown.heading and "Switches" in markdown.heading


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_every_mode_finds_an_exact_product_code(service, mode):
    result = service.search("XJ-4471 firmware", top_k=2, mode=mode)
    assert result.mode == mode
    assert "XJ-4471" in result.chunks[0].text


def test_on_topic_questions_are_more_relevant_than_off_topic_ones(service):
    on_topic = service.search("How many days of paid vacation do employees get?").best_relevance
    off_topic = service.search("What is the boiling point of liquid nitrogen?").best_relevance
    assert on_topic > off_topic + 0.2


def test_the_access_filter_is_applied_inside_the_store(service):
    # hr has fewer chunks than asked for only if the filter ran after the store's top-k:
    # a post-filter would lose the finance hits and return fewer than top_k.
    hr_chunks = service.store.count(access_filter(["hr"]))
    wanted = min(3, hr_chunks)
    assert wanted == 3
    result = service.search("Northwind revenue 2023 and the CEO", ["hr"], top_k=wanted)
    assert len(result.chunks) == wanted
    assert all(c.groups == ["hr"] for c in result.chunks)
    secret = finance_ids(service)
    for question in ["Marta Lindqvist", "revenue 4.2 million euros", "XJ-4471", "board of directors Oslo"]:
        for mode in ("dense", "sparse", "hybrid"):
            got = service.search(question, ["hr"], top_k=10, mode=mode).chunks
            assert not {c.doc_id for c in got} & secret
            assert not any("Lindqvist" in c.text or "XJ-4471" in c.text for c in got)


@pytest.mark.parametrize("groups", [[], ["nobody"], ["HR"]])
def test_groups_that_grant_nothing_get_an_empty_result(service, groups):
    result = service.search("Who is the chief executive officer?", groups, top_k=5)
    assert result.chunks == []
    assert result.best_relevance is None


def test_several_groups_see_the_union(service):
    result = service.search("Lyon office hours and Northwind revenue", ["hr", "finance"], top_k=10)
    assert {g for c in result.chunks for g in c.groups} == {"hr", "finance"}


@pytest.mark.parametrize("question", ["", "   \n\t ", "\x00"])
def test_an_empty_question_is_a_clear_error(service, question):
    with pytest.raises(QuestionError, match="empty"):
        service.search(question)


def test_a_100k_character_question_is_refused_with_the_limit(service):
    with pytest.raises(QuestionError, match=r"100,000 characters.*limit is 4,000"):
        service.search("vacation " * 11_111 + "x")


@pytest.mark.parametrize(
    "question", ["東京オフィスは何時に開きますか", "متى يفتح المكتب؟", "Когда открывается офис?", "🏢⏰❓"]
)
def test_questions_in_other_scripts_work_and_respect_the_filter(service, question):
    result = service.search(question, ["hr"], top_k=5)
    assert all(c.groups == ["hr"] for c in result.chunks)
    assert service.search(question, [], top_k=5).chunks == []


def test_a_japanese_question_finds_the_japanese_document(service):
    result = service.search("東京オフィスは午前9時に開き", top_k=1, mode="sparse")
    assert result.chunks and result.chunks[0].source.endswith("tokyo.txt")


@pytest.mark.parametrize("kwargs, match", [({"top_k": 0}, "top_k"), ({"top_k": 101}, "top_k"), ({"mode": "fuzzy"}, "mode")])
def test_bad_options_are_clear_errors(service, kwargs, match):
    with pytest.raises(QuestionError, match=match):
        service.search("vacation", **kwargs)


def test_no_store_yet_is_a_clear_error(settings):
    from rag.store.base import StoreError

    with pytest.raises(StoreError, match="Ingest documents first"):
        RagService(settings, create_store=False)


def test_the_reranker_orders_by_the_cross_encoder_scores(service):
    """A CrossEncoder built from the packaged MiniLM folder: a real model with an untrained head."""
    from rag.embedding import default_model_path
    from rag.retrieval import Retriever

    settings = service.settings.model_copy(update={"reranker_model": str(default_model_path()), "rerank_top_n": 8})
    retriever = Retriever(settings, service.store, service.embedder)
    question = "When does the Lyon office open?"
    plain = retriever.search(question, top_k=8)  # builds the reranker too
    model = retriever.reranker.model
    expected = model.predict([(question, c.text) for c in plain.chunks])  # unreranked candidates, same model
    by_score = sorted(zip(expected, [c.id for c in plain.chunks]), key=lambda pair: -pair[0])

    reranked = retriever.search(question, top_k=3)
    assert [c.id for c in reranked.chunks] == [i for _, i in by_score[:3]]
    assert [c.score for c in reranked.chunks] == pytest.approx([float(s) for s, _ in by_score[:3]], rel=1e-4)
    assert reranked.timings.rerank > 0


def test_a_missing_reranker_folder_is_a_clear_error(service, tmp_path):
    from rag.retrieval import Retriever

    settings = service.settings.model_copy(update={"reranker_model": str(tmp_path / "nope")})
    with pytest.raises(QuestionError, match="reranker model folder"):
        Retriever(settings, service.store, service.embedder).search("vacation")


def test_fused_ties_are_broken_by_relevance_so_answers_are_reproducible(tmp_path):
    """Dense and BM25 rank two passages in opposite orders: either fusion gives them the same score."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Staff are entitled to twenty-five days of paid time off annually.")
    (docs / "b.txt").write_text("Holiday request form. Attach the holiday request form to the holiday calendar.")
    svc = RagService(Settings(_env_file=None, data_dir=tmp_path / "var"))
    try:
        assert not svc.ingest([docs]).failed
        question = "How many holiday days do employees get each year?"
        first = {m: svc.search(question, top_k=2, mode=m).chunks[0].source for m in ("dense", "sparse")}
        assert first["dense"].endswith("a.txt") and first["sparse"].endswith("b.txt")  # they disagree
        for _ in range(5):
            hybrid = svc.search(question, top_k=2).chunks
            assert hybrid[0].score == hybrid[1].score  # an exact tie...
            assert [c.source.rsplit("/", 1)[-1] for c in hybrid] == ["a.txt", "b.txt"]  # ...broken by relevance
            assert hybrid[0].relevance > hybrid[1].relevance
    finally:
        svc.close()


def test_passages_of_one_page_come_back_as_one_source(tmp_path):
    """A long page yields several chunks; a search returns it once, its best passages merged exactly."""
    docs = tmp_path / "docs"
    docs.mkdir()
    facts = [f"Fact {i}: the Aurora turbine number {i} at the Bergen plant delivers {100 + i} megawatts "
             f"and was serviced in week {i + 3} by crew {chr(65 + i % 26)}." for i in range(40)]
    report = " ".join(facts)
    (docs / "aurora.txt").write_text(report)
    (docs / "other.txt").write_text("The Bergen plant canteen serves lunch from eleven to two.")
    settings = Settings(_env_file=None, data_dir=tmp_path / "var", passages_per_source=2)
    svc = RagService(settings)
    try:
        assert not svc.ingest([docs]).failed
        assert svc.store.count() >= 4  # the long file really is several chunks
        question = "How many megawatts does an Aurora turbine at the Bergen plant deliver?"
        sources = svc.search(question, top_k=3).chunks
        assert [c.source.rsplit("/", 1)[-1] for c in sources] == ["aurora.txt", "other.txt"]
        merged = sources[0].text
        # Two passages, each a verbatim stretch of the file, overlaps written once.
        parts = merged.split(GAP)
        assert all(part in report for part in parts)
        single = Retriever(settings.model_copy(update={"passages_per_source": 1}), svc.store, svc.embedder)
        ones = single.search(question, top_k=3).chunks
        assert [c.source.rsplit("/", 1)[-1] for c in ones] == ["aurora.txt", "other.txt"]  # still one per page
        assert ones[0].id == sources[0].id and ones[0].text in merged and len(merged) > len(ones[0].text) + 100
    finally:
        svc.close()
