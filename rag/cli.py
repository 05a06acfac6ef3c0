"""The `rag` command line. Each command is thin: it parses options and calls the module that does the work.

Heavy imports (torch, qdrant, llama-index) happen inside the commands, so `rag --help`
stays instant.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

app = typer.Typer(
    help="Private, on-premises question answering over your own documents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
llm_app = typer.Typer(help="Manage the local vLLM model server.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print figures (and same-run baselines).", no_args_is_help=True)
eval_app = typer.Typer(help="Offline evaluation on your own or public datasets.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys and their groups.", no_args_is_help=True)
app.add_typer(llm_app, name="llm")
app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")
app.add_typer(keys_app, name="keys")


def emit(data: Any, as_json: bool) -> None:
    """Print a result for machines (--json) or people (pretty)."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        from rich.console import Console
        from rich.pretty import Pretty

        Console().print(Pretty(data))


def fail(message: str, code: int = 1) -> None:
    """Exit with a plain-sentence error (never a stack trace)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@bench_app.command("store")
def bench_store(
    points: int = typer.Option(10_000, help="Number of random 384-d points."),
    local_max: int = typer.Option(20_000, help="Cap for the qdrant-client local-mode baseline."),
    queries: int = typer.Option(200, help="Queries per measured kind."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Benchmark the embedded store (Qdrant Edge) against qdrant-client local mode."""
    from rag.bench.store import run_store_benchmark

    emit(run_store_benchmark(points=points, local_max=local_max, n_queries=queries), as_json)


if __name__ == "__main__":
    app()
