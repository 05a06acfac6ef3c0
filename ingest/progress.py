"""How `rag ingest` shows itself to a person: a Rich progress bar on a terminal, then a
summary table with every failed file and its reason."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ingest.pipeline import IngestReport


@contextmanager
def progress_bar(console: Console):
    """Yields a progress callback for the pipeline (a no-op when not on a terminal)."""
    if not console.is_terminal:
        yield None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[chunks]} chunks"), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("files", total=None, chunks=0, rate="")

        def on_event(event: dict) -> None:
            kind = event["event"]
            if kind == "start":
                bar.update(task, total=event["files"])
            elif kind == "file":
                bar.advance(task)
            elif kind == "chunks":
                done = bar.tasks[0].fields["chunks"] + event["count"]
                elapsed = bar.tasks[0].elapsed or 1e-9
                bar.update(task, chunks=done, rate=f"{done / elapsed:.0f} chunks/s")

        yield on_event


def print_summary(report: IngestReport, console: Console) -> None:
    table = Table(title="Ingestion summary" + (" (dry run)" if report.dry_run else ""))
    table.add_column("result")
    table.add_column("files", justify="right")
    for status, n in report.summary().items():
        if status != "chunks_written":
            table.add_row(status, str(n))
    if report.dry_run:
        for status in ("would_add", "would_update", "would_regroup", "would_prune"):
            table.add_row(status, str(report.count(status)))
    table.add_row("chunks written", str(report.chunks_written))
    table.add_row("seconds", f"{report.seconds:.1f}")
    console.print(table)
    if report.failed:
        failed = Table(title="Failed files", show_lines=False)
        failed.add_column("file", overflow="fold")
        failed.add_column("reason", overflow="fold")
        for f in report.failed:
            failed.add_row(f.path, f.reason or "")
        console.print(failed)
