"""Self-contained HTML reports of `rag eval` runs: inline SVG charts, no scripts, no CDN.

One file a person can open offline: metric bars per mode, a latency histogram, and a
per-question table with what was retrieved.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from rag.eval.qa import MODE_LABELS
from rag.eval.retrieval import HybridParams

COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2"]

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;width:100%;font-size:12.5px} th,td{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f4f4f4;position:sticky;top:0} td.num{text-align:right;font-variant-numeric:tabular-nums}
.hit{background:#dff0d8} .miss{background:#f9e0e0} .muted{color:#777} .cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:130px} .card b{display:block;font-size:20px}
ol{margin:0;padding-left:18px} svg text{font-size:11px;fill:#333}
"""


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def grouped_bars(groups: dict[str, dict[str, float]], *, title: str, max_value: float | None = None,
                 unit: str = "", width: int = 720, height: int = 260) -> str:
    """Bars for every group (x axis) and series (colour), values labelled on the bars."""
    series = list(dict.fromkeys(s for values in groups.values() for s in values))
    values = [v for g in groups.values() for v in g.values() if v is not None]
    top = max_value or (max(values) * 1.15 if values else 1.0) or 1.0
    left, bottom, plot_h = 40, 40, height - 70
    plot_w = width - left - 10
    group_w = plot_w / max(len(groups), 1)
    bar_w = group_w * 0.8 / max(len(series), 1)
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" style="font-weight:600;font-size:13px">{escape(title)}</text>']
    for i in range(5):
        y = 24 + plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{top * (1 - i / 4):.2f}</text>')
    for gi, (group, vals) in enumerate(groups.items()):
        x0 = left + gi * group_w + group_w * 0.1
        for si, name in enumerate(series):
            v = vals.get(name)
            if v is None:
                continue
            h = plot_h * min(v / top, 1.0)
            x, y = x0 + si * bar_w, 24 + plot_h - h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[si % len(COLORS)]}"><title>{escape(name)}: {v:.4f}{unit}</title></rect>'
                         f'<text x="{x + bar_w / 2 - 1:.1f}" y="{y - 3:.1f}" text-anchor="middle">{v:.3g}</text>')
        parts.append(f'<text x="{x0 + group_w * 0.4:.1f}" y="{height - bottom + 18}" text-anchor="middle">{escape(group)}</text>')
    for si, name in enumerate(series):  # legend
        x = left + si * 120
        parts.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{COLORS[si % len(COLORS)]}"/>'
                     f'<text x="{x + 14}" y="{height - 5}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(series: dict[str, list[float]], *, title: str, unit: str = "ms", bins: int = 20,
              width: int = 720, height: int = 240) -> str:
    """Overlaid histograms (one colour per series) on a shared linear axis."""
    all_values = [v for vs in series.values() for v in vs]
    if not all_values:
        return f"<p class=muted>{escape(title)}: no data</p>"
    lo, hi = min(all_values), max(all_values)
    span = (hi - lo) or 1.0
    counts = {name: [0] * bins for name in series}
    for name, vs in series.items():
        for v in vs:
            counts[name][min(int((v - lo) / span * bins), bins - 1)] += 1
    top = max(max(c) for c in counts.values()) or 1
    left, plot_h, plot_w = 40, height - 70, width - 50
    bin_w = plot_w / bins
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="14" style="font-weight:600;font-size:13px">{escape(title)}</text>']
    for si, (name, c) in enumerate(counts.items()):
        color = COLORS[si % len(COLORS)]
        for b, n in enumerate(c):
            if n:
                h = plot_h * n / top
                parts.append(f'<rect x="{left + b * bin_w:.1f}" y="{24 + plot_h - h:.1f}" width="{bin_w - 1:.1f}" '
                             f'height="{h:.1f}" fill="{color}" fill-opacity="0.55"><title>{escape(name)}: {n} '
                             f'in {lo + b * span / bins:.1f}–{lo + (b + 1) * span / bins:.1f} {unit}</title></rect>')
        parts.append(f'<rect x="{left + si * 140}" y="{height - 14}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left + si * 140 + 14}" y="{height - 5}">{escape(name)} (n={len(series[name])})</text>')
    for i in range(5):
        v = lo + span * i / 4
        x = left + plot_w * i / 4
        parts.append(f'<text x="{x:.1f}" y="{24 + plot_h + 14}" text-anchor="middle">{v:.0f} {unit}</text>')
    parts.append(f'<text x="{left - 4}" y="28" text-anchor="end">{top}</text></svg>')
    return "".join(parts)


def _cards(items: dict[str, object]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><span class="muted">{escape(k)}</span><b>{escape(_fmt(v))}</b></div>' for k, v in items.items()
    ) + "</div>"


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>")


# --- Retrieval ---------------------------------------------------------------------------------------


def retrieval_report(result: dict) -> str:
    modes = result["modes"]
    metric_names = list(next(iter(modes.values()))["metrics"])
    bars = grouped_bars({m: {mode: modes[mode]["metrics"][m] for mode in modes} for m in metric_names},
                        title="Retrieval quality per mode", max_value=1.0)
    latencies = {mode: [q[mode]["latency_s"] * 1000 for q in result["per_query"].values()] for mode in modes}
    hist = histogram(latencies, title="Store query latency per mode (top-10 query)")
    table_rows = []
    for name, r in modes.items():
        cells = "".join(f'<td class="num">{r["metrics"][m]:.4f}</td>' for m in metric_names)
        lat = r["latency"]
        table_rows.append(f"<tr><th>{escape(name)}</th>{cells}<td class=num>{lat['p50_ms']:.1f}</td>"
                          f"<td class=num>{lat['p95_ms']:.1f}</td></tr>")
    summary = ("<table><tr><th>mode</th>" + "".join(f"<th>{escape(m)}</th>" for m in metric_names)
               + "<th>p50 ms</th><th>p95 ms</th></tr>" + "".join(table_rows) + "</table>")
    params = result.get("hybrid_params", {})
    info = _cards({"dataset": result["dataset"], "split": result["split"], "queries": result["queries"],
                   "documents": result["index"]["documents"], "passages": result["index"]["passages"],
                   "fusion": params.get("fusion", "rrf"),
                   "rrf k": params.get("rrf_k") if params.get("fusion", "rrf") == "rrf" else "-",
                   "dense weight": params.get("dense_weight"),
                   "prefetch": params.get("prefetch")})
    rows = []
    mode_names = list(modes)
    for qid, q in result["per_query"].items():
        relevant = set(q["relevant"])
        cells = []
        for mode in mode_names:
            ranked = "".join(f'<li class="{"hit" if d in relevant else ""}">{escape(d)}</li>' for d in q[mode]["ranked"])
            cells.append(f'<td class="num">{q[mode]["ndcg@10"]:.3f}</td><td><ol>{ranked}</ol></td>')
        rows.append(f"<tr><td>{escape(qid)}</td><td>{escape(q['query'])}<br><span class=muted>relevant: "
                    f"{escape(', '.join(q['relevant']))}</span></td>{''.join(cells)}</tr>")
    header = "".join(f"<th>{m} nDCG@10</th><th>{m} top 10</th>" for m in mode_names)
    per_query = f"<table><tr><th>id</th><th>query</th>{header}</tr>{''.join(rows)}</table>"
    tuning = ""
    if result.get("tuning"):
        best = result["tuning"]["best"]
        tuning = (f"<h2>Tuning (on the train split)</h2><p>{len(result['tuning']['trials'])} settings tried; best: "
                  f"{escape(HybridParams(**best).describe())}.</p>")
    body = (info + "<h2>Quality</h2>" + bars + summary + "<h2>Latency</h2>" + hist + tuning
            + "<h2>Per query</h2><p class=muted>Green: a relevant document.</p>" + per_query)
    return _page(f"Retrieval evaluation: {result['dataset']}", body)


# --- Question answering ---------------------------------------------------------------------------


def qa_report(result: dict) -> str:
    s = result["summary"]
    by_mode = s.get("page_hit_by_mode") or {"configured": {f"page_hit@{k}": s.get(f"page_hit@{k}") for k in (1, 5, 10)}}
    hit_bars = grouped_bars({f"hit@{k}": {MODE_LABELS.get(mode, mode): figures[f"page_hit@{k}"]
                                          for mode, figures in by_mode.items()} for k in (1, 5, 10)},
                            title="Evidence page found in the top k, by retrieval mode", max_value=1.0)
    if s.get("page_hit_by_mode"):
        hit_bars += ("<p class=muted>Best of dense/BM25 takes, for each question, whichever of the two rankings "
                     "found the page sooner. When hybrid is close to it, no fusion weight will do much better; "
                     "a stronger embedding model or a reranker is what would.</p>")
    answer_metrics = {name: {"share": s.get(key)} for name, key in (
        ("correct", "correct"), ("citation precision", "citation_precision"),
        ("cited", "answers_with_citations"), ("refusal (wrong docs)", "refusal_on_wrong_documents"),
        ("refusal (unanswerable)", "refusal_on_unanswerable"),
        ("refused before the model (wrong docs)", "gate_refusal_on_wrong_documents"),
        ("refused before the model (unanswerable)", "gate_refusal_on_unanswerable"),
        ("refused before the model (answerable)", "gate_refusal_on_answerable")) if s.get(key) is not None}
    answer_bars = grouped_bars(answer_metrics, title="Answers", max_value=1.0) if answer_metrics else ""
    latencies = {"search": [r["search_s"] * 1000 for r in result["questions"]]}
    if any("total_s" in r for r in result["questions"]):
        latencies["answer (total)"] = [r["total_s"] * 1000 for r in result["questions"] if "total_s" in r]
    hist = histogram(latencies, title="Latency")
    cards = _cards({"questions": s["questions"], **{f"page hit@{k}": s.get(f"page_hit@{k}") for k in (1, 5, 10)},
                    "correct": s.get("correct"), "citation precision": s.get("citation_precision"),
                    "answer p50 ms": s.get("answer_latency", {}).get("p50_ms"),
                    "search p50 ms": s["search_latency"]["p50_ms"]})
    rows = []
    for r in result["questions"]:
        hit = r.get("hit@5")
        cls = "" if hit is None else ("hit" if hit else "miss")
        retrieved = "".join(
            f'<li class="{"hit" if r.get("hit_rank") == i else ""}">{escape(x)}</li>' for i, x in enumerate(r["retrieved"], 1)
        )
        correctness = r.get("correctness")
        verdict = "" if not correctness else (f'{"✔" if correctness["correct"] else "✘"} {correctness["method"]} '
                                              f'{correctness["score"]:.2f}')
        probe = r.get("refusal_probe")
        if probe and "status" in probe:
            probe_text = (f'{"refused" if probe["refused"] else "claimed"} ({probe["status"]})'
                          f'<br><span class=muted>{escape(probe["answer"][:200])}</span>')
        elif probe:  # --no-llm: only the gates before the model ran
            probe_text = escape(probe["gate"] or "would ask the model")
        else:
            probe_text = ""
        rows.append(
            f'<tr><td>{escape(r["question"])}<br><span class=muted>expected: {escape(", ".join(r["expected"]))}</span></td>'
            f'<td class="{cls}">{_fmt(r.get("hit_rank"))}</td><td><ol>{retrieved}</ol></td>'
            f'<td>{escape(r.get("answer") or r.get("message") or r.get("gate") or "")}<br><span class=muted>'
            f'{escape(" ".join(r.get("citations", [])))}</span></td><td>{escape(r.get("gold") or "")}</td>'
            f'<td>{escape(verdict)}</td><td>{probe_text}</td></tr>'
        )
    table = ("<table><tr><th>question</th><th>hit rank</th><th>retrieved</th><th>answer</th><th>gold</th>"
             f"<th>correct</th><th>wrong-document probe</th></tr>{''.join(rows)}</table>")
    # What the figures were measured with, so a report read later can be compared fairly.
    settings = "<h2>Settings</h2>" + _cards(result["settings"]) if result.get("settings") else ""
    body = (cards + "<h2>Retrieval</h2>" + hit_bars + _tuning_section(result.get("tuning"))
            + "<h2>Answers</h2>" + answer_bars + "<h2>Latency</h2>" + hist
            + settings + "<h2>Per question</h2>" + table)
    return _page("Question-answering evaluation", body)


def _tuning_section(tuning: dict | None) -> str:
    if not tuning:
        return ""
    bars = grouped_bars({m: {"configured": tuning["configured"][m], "tuned (held out)": tuning["held_out"][m]}
                         for m in tuning["configured"]},
                        title=f"Tuning: {tuning['folds']}-fold cross-validation, folds by document", max_value=1.0)
    trials = "".join(
        f"<tr><td>{escape(t['setting'])}</td>" + "".join(f'<td class="num">{t[m]:.3f}</td>' for m in tuning["configured"])
        + "</tr>" for t in sorted(tuning["trials"], key=lambda t: -t["mrr@10"]))
    header = "".join(f"<th>{escape(m)} (all questions)</th>" for m in tuning["configured"])
    return (bars + f"<p>{escape(tuning['advice'])}.</p><details><summary>{len(tuning['trials'])} settings tried</summary>"
            f"<table><tr><th>setting</th>{header}</tr>{trials}</table></details>")


def write_report(html: str, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path

