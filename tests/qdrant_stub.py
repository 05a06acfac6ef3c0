"""A tiny Qdrant REST server (stdlib only, 127.0.0.1) for testing the server engine here,
where no real Qdrant server can run. It keeps points in memory, evaluates the filters the app
uses, and records every request so tests can check what the client sent (API key, shards,
replication, payload indexes, filters)."""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _match(cond: dict, payload: dict) -> bool:
    value = payload.get(cond["key"])
    values = value if isinstance(value, list) else [value]
    m = cond["match"]
    if "any" in m:
        return any(v in m["any"] for v in values)
    return m["value"] in values


def _passes(flt: dict | None, payload: dict) -> bool:
    if not flt:
        return True
    return all(_match(c, payload) for c in flt.get("must") or []) and not any(
        _match(c, payload) for c in flt.get("must_not") or []
    )


class QdrantStub:
    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[tuple[str, str, dict, dict]] = []  # method, path, headers, body
        self.collections: dict[str, dict] = {}
        self.points: dict[str, dict[str, dict]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> QdrantStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- scoring ---------------------------------------------------------------
    def _score(self, name: str, query, point: dict) -> float:
        vec = point["vector"].get(name)
        if vec is None:
            return 0.0
        if isinstance(query, dict):  # sparse
            weights = dict(zip(vec["indices"], vec["values"]))
            return sum(weights.get(i, 0.0) * v for i, v in zip(query["indices"], query["values"]))
        norm = math.sqrt(sum(x * x for x in vec)) * math.sqrt(sum(x * x for x in query)) or 1.0
        return sum(a * b for a, b in zip(vec, query)) / norm

    def _search(self, coll: str, query, using: str, flt, limit: int) -> list[tuple[str, float]]:
        scored = [
            (pid, self._score(using, query, p))
            for pid, p in self.points[coll].items()
            if _passes(flt, p["payload"])
        ]
        scored.sort(key=lambda x: -x[1])
        return scored[:limit]

    def _query(self, coll: str, body: dict) -> list[dict]:
        flt, limit = body.get("filter"), body.get("limit", 10)
        if body.get("prefetch"):
            k = body["query"]["rrf"].get("k") or 60
            fused: dict[str, float] = {}
            for pre in body["prefetch"]:
                ranked = self._search(coll, pre["query"], pre["using"], pre.get("filter") or flt, pre["limit"])
                for rank, (pid, _) in enumerate(ranked):
                    fused[pid] = fused.get(pid, 0.0) + 1.0 / (k + rank)
            ranked = sorted(fused.items(), key=lambda x: -x[1])[:limit]
        else:
            query = body["query"]
            if isinstance(query, dict) and "nearest" in query:  # {"nearest": vector}, as sent with params
                query = query["nearest"]
            ranked = self._search(coll, query, body.get("using", ""), flt, limit)
        return [
            {"id": pid, "version": 0, "score": s, "payload": self.points[coll][pid]["payload"]}
            for pid, s in ranked
        ]

    # --- HTTP ------------------------------------------------------------------
    def _handle(self, method: str, path: str, headers: dict, body: dict):
        self.requests.append((method, path, headers, body))
        if self.api_key is not None and headers.get("api-key") != self.api_key:
            return 403, {"status": {"error": "Forbidden: wrong api key"}}
        path = path.split("?")[0]
        if path == "/":
            return 200, {"title": "qdrant - vector search engine", "version": "1.15.0"}
        m = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
        if not m:
            return 404, {"status": {"error": "not found"}}
        coll, rest = m.group(1), m.group(2) or ""
        if rest == "/exists":
            return 200, {"result": {"exists": coll in self.collections}, "status": "ok", "time": 0}
        if rest == "" and method == "PUT":
            self.collections[coll] = body
            self.points[coll] = {}
            return 200, {"result": True, "status": "ok", "time": 0}
        if coll not in self.collections:
            return 404, {"status": {"error": f"Collection `{coll}` doesn't exist!"}}
        if rest == "" and method == "GET":
            return 200, {"result": self._collection_info(coll), "status": "ok", "time": 0}
        if rest == "/index":
            return 200, {"result": {"operation_id": 0, "status": "completed"}, "status": "ok", "time": 0}
        points = self.points[coll]
        done = {"result": {"operation_id": 0, "status": "completed"}, "status": "ok", "time": 0}
        if rest == "/points" and method == "PUT":
            for p in body["points"]:
                points[str(p["id"])] = {"vector": p["vector"], "payload": p.get("payload") or {}}
            return 200, done
        if rest == "/points/delete":
            for pid in [pid for pid, p in points.items() if _passes(body["filter"], p["payload"])]:
                del points[pid]
            return 200, done
        if rest == "/points/payload":
            for p in points.values():
                if _passes(body["filter"], p["payload"]):
                    p["payload"].update(body["payload"])
            return 200, done
        if rest == "/points/count":
            n = sum(_passes(body.get("filter"), p["payload"]) for p in points.values())
            return 200, {"result": {"count": n}, "status": "ok", "time": 0}
        if rest == "/points/scroll":
            ids = sorted(pid for pid, p in points.items() if _passes(body.get("filter"), p["payload"]))
            start = ids.index(body["offset"]) if body.get("offset") in ids else 0
            page = ids[start : start + body.get("limit", 10)]
            nxt = ids[start + len(page)] if start + len(page) < len(ids) else None
            return 200, {
                "result": {"points": [{"id": pid, "payload": points[pid]["payload"]} for pid in page],
                           "next_page_offset": nxt},
                "status": "ok", "time": 0,
            }
        if rest == "/points/query":
            return 200, {"result": {"points": self._query(coll, body)}, "status": "ok", "time": 0}
        return 404, {"status": {"error": f"stub does not know {method} {path}"}}

    def _collection_info(self, coll: str) -> dict:
        body = self.collections[coll]
        return {
            "status": "green", "optimizer_status": "ok", "points_count": len(self.points[coll]),
            "segments_count": 1, "payload_schema": {},
            "config": {
                "params": {"vectors": body["vectors"], "sparse_vectors": body.get("sparse_vectors"),
                           "shard_number": body.get("shard_number", 1),
                           "replication_factor": body.get("replication_factor", 1)},
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
                "optimizer_config": {"deleted_threshold": 0.2, "vacuum_min_vector_number": 1000,
                                     "default_segment_number": 0, "flush_interval_sec": 5},
                "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
            },
        }

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _do(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                headers = {k.lower(): v for k, v in self.headers.items()}
                code, payload = stub._handle(self.command, self.path, headers, body)
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _do

            def log_message(self, *args):  # keep test output clean
                pass

        return Handler
