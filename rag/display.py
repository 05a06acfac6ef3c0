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


def print_retrieval_eval(result: dict, console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"{result['dataset']} ({result['split']}, {result['queries']} queries, "
                        f"{result['index']['passages']} passages)")
    modes = result["modes"]
    metrics = list(next(iter(modes.values()))["metrics"])
    table.add_column("mode")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("store p50 ms", justify="right")
    table.add_column("store p95 ms", justify="right")
    for mode, r in modes.items():
        table.add_row(mode, *(f"{r['metrics'][m]:.4f}" for m in metrics),
                      f"{r['latency']['p50_ms']:.1f}", f"{r['latency']['p95_ms']:.1f}")
    console.print(table)
    from rag.eval.retrieval import HybridParams

    params = HybridParams(**result["hybrid_params"])
    console.print(f"hybrid: {params.describe()}; query embedding p50 {result['query_embed_latency']['p50_ms']:.1f} ms")
    if result.get("tuning"):
        console.print(f"tuned on the train split ({len(result['tuning']['trials'])} settings tried)")


def print_tuning(tuning: dict, console: Console) -> None:
    """Configured vs cross-validated figures, and what to set (only if it wins on held-out questions)."""
    from rich.table import Table

    table = Table(title=f"Tuning: {tuning['folds']}-fold cross-validation on {tuning['questions']} questions")
    table.add_column("")
    metrics = list(tuning["configured"])
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_row("configured", *(f"{tuning['configured'][m]:.3f}" for m in metrics))
    table.add_row("tuned (held out)", *(f"{tuning['held_out'][m]:.3f}" for m in metrics))
    console.print(table)
    console.print(tuning["advice"] + ".")


def print_hits_by_mode(by_mode: dict, console: Console) -> None:
    from rich.table import Table

    from rag.eval.qa import MODE_LABELS

    table = Table(title="Evidence page by retrieval mode")
    table.add_column("mode")
    metrics = list(next(iter(by_mode.values())))
    for m in metrics:
        table.add_column(m, justify="right")
    for mode, figures in by_mode.items():
        table.add_row(MODE_LABELS.get(mode, mode), *(f"{figures[m]:.3f}" for m in metrics))
    console.print(table)


def print_qa_eval(result: dict, console: Console) -> None:
    from rich.table import Table

    table = Table(title="Question answering", show_header=False)
    summary = dict(result["summary"])
    by_mode = summary.pop("page_hit_by_mode", None)
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.0f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        table.add_row(key.replace("_", " "), "–" if value is None else str(value))
    console.print(table)
    if by_mode:
        print_hits_by_mode(by_mode, console)
    if result.get("tuning"):
        print_tuning(result["tuning"], console)
    failed = result["ingest"]["failed"]
    if failed:
        console.print(f"[yellow]{len(failed)} files failed to ingest[/yellow]")
