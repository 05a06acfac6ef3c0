"""`rag bench parse --data DIR`: our parsers over a folder of real files, and the PDF
library choice measured: pypdf against PyMuPDF (plain text and our reading-order text)
on the same PDFs, pages/s and characters extracted.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

from rag.settings import Settings


def run_parse_benchmark(settings: Settings, data: list[Path], pdf_libraries: bool = True) -> dict:
    from ingest.discovery import discover
    from ingest.parsers import ParseError, parse

    found = discover(data, settings)
    per_format: dict[str, Counter] = defaultdict(Counter)
    seconds: Counter = Counter()
    failures = []
    pages = 0
    for error in found.errors:
        ext = Path(error.path).suffix.lower() or "(none)"
        per_format[ext][error.kind if error.kind == "unsupported" else "failed"] += 1
        failures.append({"doc_id": error.doc_id, "reason": error.reason})
    for candidate in found.files:
        ext = candidate.path.suffix.lower()
        started = time.perf_counter()
        try:
            document = parse(candidate.path, settings)
            per_format[ext]["ok"] += 1
            pages += document.pages or 0
        except ParseError as exc:
            per_format[ext]["failed"] += 1
            failures.append({"doc_id": candidate.doc_id, "reason": exc.reason})
        seconds[ext] += time.perf_counter() - started
    result: dict = {
        "files": len(found.files) + len(found.errors),
        "per_format": {
            ext: {**dict(counts), "seconds": round(seconds[ext], 2)} for ext, counts in sorted(per_format.items())
        },
        "pages_parsed": pages,
        "failures": failures,
    }
    if pdf_libraries:
        pdfs = [c.path for c in found.files if c.path.suffix.lower() == ".pdf"]
        result["pdf_libraries"] = compare_pdf_libraries(pdfs)
    return result


def compare_pdf_libraries(pdfs: list[Path]) -> dict:
    """Pages/s and characters of pypdf and PyMuPDF on the same files (encrypted ones with '')."""
    import pymupdf
    import pypdf

    from ingest.parsers.pdf import page_text

    def with_pypdf(path: Path) -> tuple[int, int]:
        reader = pypdf.PdfReader(str(path))
        if reader.is_encrypted:
            reader.decrypt("")
        texts = [page.extract_text() or "" for page in reader.pages]
        return len(texts), sum(len(t) for t in texts)

    def with_pymupdf(extract) -> callable:
        def run(path: Path) -> tuple[int, int]:
            with pymupdf.open(str(path)) as doc:
                texts = [extract(page) for page in doc]
            return len(texts), sum(len(t) for t in texts)

        return run

    libraries = {
        "pypdf": with_pypdf,
        "pymupdf_plain": with_pymupdf(lambda page: page.get_text()),
        "pymupdf_reading_order": with_pymupdf(page_text),  # what ingestion uses
    }
    out = {}
    for name, run in libraries.items():
        pages = chars = 0
        started = time.perf_counter()
        for path in pdfs:
            try:
                p, c = run(path)
            except Exception:  # noqa: BLE001, S112 - a library that cannot read a file gets no pages for it
                continue
            pages, chars = pages + p, chars + c
        elapsed = time.perf_counter() - started
        out[name] = {"pages": pages, "seconds": round(elapsed, 2), "pages_per_s": round(pages / elapsed, 1),
                     "characters": chars}
    out["speedup_pymupdf_over_pypdf"] = round(
        out["pymupdf_reading_order"]["pages_per_s"] / max(out["pypdf"]["pages_per_s"], 1e-9), 1)
    return out
