"""Schemathesis against the app's own OpenAPI document, in-process (ASGI), with the real
store, embedder and model server: generated valid and invalid requests for every
operation, a bounded number each. No request may end in a server error, and every
answer must match the schema the API documents for it."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
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
    app_settings = llm_server.configure(base).model_copy(update={"llm_max_tokens": 8, "api_max_upload_mb": 1.0})
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


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
def test_no_server_errors_and_answers_match_the_schema(case, api):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {api.state.test_key}"},
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )
