"""Passages of one page become one source: grouping and exact merging of overlapping chunks."""

from rag.retrieval import GAP, group_by_unit, merged_text
from rag.store.base import Hit

PAGE = "Revenue grew nine percent. Operating margin was 21 percent. Capital expenditure fell to 1.2 billion."


def hit(start: int, end: int, page: int = 3, doc: str = "d1", score: float = 1.0, heading=None) -> Hit:
    payload = {"doc_id": doc, "page": page, "heading": heading, "start": start, "end": end, "text": PAGE[start:end]}
    return Hit(id=f"{doc}-{page}-{start}", score=score, payload=payload)


def test_overlapping_passages_are_joined_once_in_reading_order():
    later, earlier = hit(20, 70), hit(0, 40)  # best first: the later passage scored higher
    assert merged_text([later, earlier]) == PAGE[0:70]


def test_adjacent_and_distant_passages():
    assert merged_text([hit(0, 27), hit(27, 59)]) == PAGE[0:59]
    assert merged_text([hit(60, 101), hit(0, 26)]) == PAGE[0:26] + GAP + PAGE[60:101]


def test_a_passage_inside_another_adds_nothing():
    assert merged_text([hit(0, 70), hit(10, 30)]) == PAGE[0:70]


def test_offsets_that_disagree_with_the_text_are_not_trusted():
    # Two units with the same key (page and heading): offsets point into different texts.
    other = Hit(id="x", score=0.5, payload={"doc_id": "d1", "page": 3, "heading": None, "start": 10, "end": 40,
                                            "text": "A different unit's words entirely here"})
    assert merged_text([hit(0, 27), other]) == PAGE[0:27] + GAP + "A different unit's words entirely here"


def test_passages_without_offsets_are_kept_whole():
    bare = [Hit(id=str(i), score=1.0, payload={"doc_id": "d", "text": t}) for i, t in enumerate(["one", "two"])]
    assert merged_text(bare) == "one" + GAP + "two"


def test_grouping_keeps_rank_order_and_the_limit_per_page():
    hits = [hit(0, 20, page=3), hit(0, 20, page=4), hit(20, 40, page=3), hit(40, 60, page=3),
            hit(0, 20, page=3, doc="d2"), hit(0, 20, page=3, heading="Notes")]
    groups = group_by_unit(hits, per_unit=2)
    assert [[h.id for h in g] for g in groups] == [
        ["d1-3-0", "d1-3-20"],  # the page's third passage is over the limit
        ["d1-4-0"],
        ["d2-3-0"],  # same page number, another document
        ["d1-3-0"],  # same page, another heading section
    ]
    assert [len(g) for g in group_by_unit(hits, per_unit=1)] == [1, 1, 1, 1]
