"""Schemathesis against the app's own OpenAPI document, in-process (ASGI), with the real
store, embedder and model server: generated valid and invalid requests for every
operation, a bounded number each. No request may end in a server error, and every
answer must match the schema the API documents for it."""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from api_support import make_key
from rag.api.app import create_app
from rag.service import RagService
from rag.settings import Settings

pytestmark = pytest.mark.llm

MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def api(tmp_path_factory, llm_server):
    base = Settings(data_dir=tmp_path_factory.mktemp("api-schema") / "var", _env_file=None)
    # Short answers: the point is the protocol, and the model runs on CPU.
    app_settings = llm_server.configure(base).model_copy(
        update={"llm_max_tokens": 8, "condense_questions": False, "api_max_upload_mb": 1.0})
    service = RagService(app_settings)
    guide = app_settings.documents_dir / "ops" / "guide.txt"
    guide.parent.mkdir(parents=True)
    guide.write_text("Installation guide.\n\nRun the installer, then restart the service.\n")
    assert service.ingest([guide], groups=["ops"]).count("added") == 1
    app = create_app(app_settings, service)
    app.state.test_key = make_key(app_settings, "admin", None, admin=True)
    yield app
    service.close()


@pytest.fixture(scope="module")
def api_schema(api):
    return schemathesis.openapi.from_asgi("/openapi.json", api)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_answers_match_the_schema(api, api_schema, mode):
    headers = {"Authorization": f"Bearer {api.state.test_key}"}
    calls: Counter = Counter()
    without_inputs: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        # No shrinking: a failing case is reported as found (shrinking re-runs model calls).
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(headers=headers, timeout=300)
            calls[response.status_code // 100] += 1
            assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text)
            case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                     response_schema_conformance], headers=headers)

        try:
            check()
        except Unsatisfiable:  # nothing to make invalid (e.g. GET /healthz has no inputs)
            assert mode == GenerationMode.NEGATIVE
            without_inputs.append(operation.label)
    print(f"\nschemathesis {mode}: {sum(calls.values())} calls, by status class: {dict(calls)}; "
          f"no invalid inputs possible: {without_inputs}")
    assert calls[5] == 0 and sum(calls.values()) >= len(operations) - len(without_inputs)
