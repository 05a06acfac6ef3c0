"""How search results and answers look in a terminal (the CLI's pretty output)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from rag.schema import Answer, Citation, SearchResult, Timings


def where(source: str, page: int | None, heading: str | None = None) -> str:
    """'report.pdf p.3 · Results > Revenue'"""
    text = source + (f" p.{page}" if page is not None else "")
    return text + (f" · {heading}" if heading else "")


def timings_line(t: Timings) -> str:
    stages = ["condense", "embed", "retrieve", "rerank", "first_token", "generate", "total"]
    parts = [f"{name.replace('_', ' ')} {getattr(t, name) * 1000:.0f} ms" for name in stages if getattr(t, name)]
    return " · ".join(parts)


def print_search(result: SearchResult, console: Console) -> None:
    if not result.chunks:
        console.print("No passages found in the documents you can access.")
    for i, chunk in enumerate(result.chunks, 1):
        relevance = f", similarity {chunk.relevance:.2f}" if chunk.relevance is not None else ""
        console.print(f"[bold]{i}. {escape(where(chunk.source, chunk.page, chunk.heading))}[/bold]"
                      f"  [dim](score {chunk.score:.4f}{relevance})[/dim]")
        console.print(f"   {escape(chunk.snippet)}", highlight=False)
    console.print(f"[dim]{result.mode} · {timings_line(result.timings)}[/dim]")


def print_citations(citations: list[Citation], console: Console) -> None:
    if not citations:
        return
    console.print("\n[bold]Sources[/bold]")
    for c in citations:
        note = " [dim](picked by word overlap: the model cited nothing)[/dim]" if c.inferred else ""
        console.print(f"  [{c.n}] {escape(where(c.source, c.page, c.heading))}{note}", highlight=False)


def print_answer(answer: Answer, console: Console, *, body: bool = True) -> None:
    """The answer (unless it was already streamed), its numbered citations and timings."""
    if answer.standalone_question:
        console.print(f"[dim]Understood as: {escape(answer.standalone_question)}[/dim]")
    if answer.status == "answered":
        if body:
            console.print(escape(answer.answer), highlight=False)
        print_citations(answer.citations, console)
    elif answer.status == "not_found":
        console.print(f"[yellow]{escape(answer.message or 'Not found.')}[/yellow]")
    else:
        console.print(f"[red]The language model is unavailable: {escape(answer.message or '')}[/red]")
        if answer.sources:
            console.print("\n[bold]Passages found[/bold]")
            for i, s in enumerate(answer.sources, 1):
                console.print(f"  [{i}] {escape(where(s.source, s.page, s.heading))}", highlight=False)
    console.print(f"\n[dim]{timings_line(answer.timings)}[/dim]")
