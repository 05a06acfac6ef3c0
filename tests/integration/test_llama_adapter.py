"""llama-index over our store: its retrievers work on the same data, with hybrid search and
the access filter, using our embedder (never a default cloud model)."""

from __future__ import annotations

import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters

from rag.embedding import Embedder, LlamaEmbedding
from rag.store.factory import open_store
from rag.store.llama import LlamaVectorStore


@pytest.fixture
def index(settings):
    store = open_store(settings)
    embed = LlamaEmbedding(embedder=Embedder(settings))
    index = VectorStoreIndex.from_vector_store(LlamaVectorStore(store), embed_model=embed)
    nodes = [
        TextNode(text="Employees receive 30 days of annual leave per year.", metadata={"groups": ["hr"], "source": "leave.md"}),
        TextNode(text="The parental leave policy grants 16 weeks.", metadata={"groups": ["hr"], "source": "parental.md"}),
        TextNode(text="Quarterly revenue grew 12 percent to 4.2 million euros.", metadata={"groups": ["finance"], "source": "q3.md"}),
        TextNode(text="The cafeteria opens at 8 am and serves lunch until 2 pm.", metadata={"groups": ["everyone"], "source": "canteen.md"}),
    ]
    for i, node in enumerate(nodes):
        node.relationships = {}
        node.id_ = f"n{i}"
    index.insert_nodes(nodes)
    yield index
    store.close()


def test_retriever_finds_the_relevant_node(index):
    results = index.as_retriever(similarity_top_k=2).retrieve("How many vacation days do staff get?")
    assert results[0].node.get_content().startswith("Employees receive 30 days")


def test_hybrid_retriever_with_group_filter(index):
    filters = MetadataFilters(filters=[MetadataFilter(key="groups", value=["finance", "everyone"], operator=FilterOperator.IN)])
    retriever = index.as_retriever(similarity_top_k=4, vector_store_query_mode="hybrid", filters=filters)
    results = retriever.retrieve("annual leave days")
    sources = {r.node.metadata["source"] for r in results}
    assert sources and sources <= {"q3.md", "canteen.md"}  # hr documents never come back


def test_unsupported_filter_is_a_clear_error(index):
    filters = MetadataFilters(filters=[MetadataFilter(key="author", value="x")])
    with pytest.raises(NotImplementedError, match="only filters on"):
        index.as_retriever(filters=filters).retrieve("anything")
