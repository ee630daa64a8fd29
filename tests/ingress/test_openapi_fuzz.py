"""schemathesis over the whole OpenAPI spec against the deployed service. Every generated request is checked
for two things:

1. No request the spec allows, valid or not, gets a 5xx other than the documented ones (a model starting
   or the service overloaded: 503 with Retry-After). A model's malformed JSON cannot be one: structured
   answers (product descriptions, response formats, tool calls) are held to their schema while decoding.
2. The spec states every limit the service enforces on a request (schemathesis' `positive_data_acceptance`):
   a request the spec allows is not refused with a 4xx. Such a refusal counts as a schema/validation
   mismatch, except where it is about state, which no schema can know:
   - 401 / 403 (API keys), 404 (an unknown job, file, upload, voice or model name), 409 (a job's or a
     voice's state), 413 (a body or a medium over the size limits), 429, 507 (the model cache's quota);
   - 400 WRONG_MODEL_TASK, and a 400 that names the model or family the request reaches (`model limit`,
     `model '<id>'`, `model family '<name>'`): its limits, voices and languages are catalog data (GET
     /models/{id}), the model a request that names none reaches is its task's current model (switched at
     run time, PUT /models/current/{task}), and which task's input a job takes depends on the model named;
   - a 400 or 415 about the bytes of an uploaded file or sample (not decodable audio or image, empty, a
     file type the model family does not take, an image without the transparent pixels that mark what
     to edit): a schema types an upload as binary; it cannot say "a WAV";
   - a 400 about where a URL the request names leads (a host that does not resolve, or resolves to a
     private address; a fetch that fails): DNS and the network are state too;
   - a 400 about how chat fields relate (tool_choice naming a function the tools lack, or needing tools;
     a tool turn without the id of the call it answers) or about a JSON schema a request carries that the
     grammar library cannot enforce: OpenAPI cannot say either.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup

EXAMPLES = 3
# 5xx the spec documents as the service's answer, not its failure: (status, error_code)
DOCUMENTED_5XX = {(503, "MODEL_STARTING"), (503, "MODEL_UNAVAILABLE"), (503, "SERVICE_OVERLOADED"),
                  (503, "HUGGINGFACE_API_ERROR")}
# /health's documented 503: a check slower than its timeout while the fuzzer loads both cores counts as
# degraded; the problems it names are printed by the test, not hidden.
# Operations that remove what the rest of the suite relies on (the cached models); their inputs are
# covered by tests/model_cache/test_model_management.py.
DESTRUCTIVE = [("DELETE", "/models/download/{model_name}"), ("POST", "/models/manage")]
# Refusals of schema-valid requests that are about state (see the module docstring); positive_data_acceptance
# itself already lets 401, 403, 404, 409 and 429 through.
STATE_STATUSES = {413, 507}
MODEL_STATE = re.compile(r"\bmodel (limit\b|(family )?'[^']*')", re.IGNORECASE)
UPLOAD_BYTES = re.compile(r"File type '|cannot be processed by|is not valid audio|is not a readable image|"
                          r"audio cannot be read|not audio this service can decode|is not UTF-8 text|"
                          r"(' |\) )is empty$|an image whose transparent pixels")
URL_STATE = re.compile(r"' cannot be resolved|' resolves to .* private|^Fetching '")
CHAT_FIELDS = re.compile(r"tool_choice needs tools|tool_choice names function|needs the tool_call_id|"
                         r"cannot be enforced while decoding|is not a JSON schema")


def problem(case, response) -> str | None:
    """Why this response is a server error the spec does not document, or None."""
    if response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if (response.status_code, body.get("error_code")) in DOCUMENTED_5XX:
        return None
    if case.operation.path == "/health" and body.get("status") == "degraded":
        print("/health degraded under the fuzzer's load:", body.get("problems"))
        return None
    detail = body.get("problems") or response.text[:400]  # /health: what it found wrong
    return (f"{case.method} {case.formatted_path} -> {response.status_code} {detail}\n"
            f"  reproduce: {case.as_curl_command()}")


def mismatch(case, response) -> str | None:
    """Why the service refused a request its spec allows, or None (accepted, or refused for state)."""
    try:
        case.validate_response(response, checks=[positive_data_acceptance])
        return None
    except FailureGroup:
        pass
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = str(body.get("message") or response.text[:400])
    if (response.status_code in STATE_STATUSES or body.get("error_code") == "WRONG_MODEL_TASK"
            or any(pattern.search(message) for pattern in (MODEL_STATE, UPLOAD_BYTES, URL_STATE, CHAT_FIELDS))):
        return None
    return (f"{case.method} {case.formatted_path} -> {response.status_code} {message[:300]}\n"
            f"  reproduce: {case.as_curl_command()}")


@pytest.mark.disruptive
def test_no_server_errors_and_no_schema_valid_request_refused(service):
    """Up to EXAMPLES generated requests per operation (derandomized: CI replays the same ones), each checked
    for an undocumented 5xx and for a schema/validation mismatch (module docstring)."""
    # the first /openapi.json builds the spec (its language lists load Whisper's tables): more than the default 10 s
    # while the box is busy
    schema = schemathesis.openapi.from_url(f"{service}/openapi.json", timeout=60)
    for method, path in DESTRUCTIVE:
        schema = schema.exclude(method=method, path=path)
    found: dict[str, str] = {}  # operation -> its first unexplained 5xx
    refused: dict[str, str] = {}  # operation -> its first schema-valid request refused with a 4xx
    calls = [0]

    def fuzz_operation(operation) -> None:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def fuzz(case):
            calls[0] += 1
            response = case.call(timeout=120)
            why = problem(case, response)
            if why and operation.label not in found:
                found[operation.label] = why
            why = mismatch(case, response)
            if why and operation.label not in refused:
                refused[operation.label] = why

        fuzz()

    for result in schema.get_all_operations():
        fuzz_operation(result.ok())
    print(f"\nschema/validation mismatches: {len(refused)} operations refused a request the spec allows")
    for why in refused.values():
        print(f"  {why}")
    assert calls[0] >= 100, calls  # the spec's operations were reached, not skipped
    assert not found, f"{len(found)} operations answered a server error:\n" + "\n".join(found.values())
    assert not refused, (f"{len(refused)} operations refused a request their schema allows (a limit the "
                         f"spec does not state):\n" + "\n".join(refused.values()))
