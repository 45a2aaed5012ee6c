"""Schema-driven fuzzing of every documented route: whatever a client sends that fits (or
nearly fits) the OpenAPI schema, the server never answers with a 5xx."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from serving import running_server

from keel.server import ServerConfig, create_app

# Small limits keep each generated request quick; the limits themselves get fuzzed too.
CONFIG = ServerConfig(max_tokens=4, max_prompt_chars=200, max_body_bytes=20_000)
schema = schemathesis.openapi.from_dict(create_app(CONFIG).openapi())


@pytest.fixture(scope="module")
def base_url():
    with running_server(CONFIG) as url:
        yield url


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, base_url):
    case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=120)
