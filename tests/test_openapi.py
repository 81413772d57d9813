"""The OpenAPI document (generated from the pydantic models) matches the contract's field names
and enums, as written in the API.md request table."""

from __future__ import annotations

import re

import pytest

from service.api.app import create_app
from service.config import REPO_ROOT, Settings

SHARED = REPO_ROOT.parent / "shared" / "API.md"
COPY = REPO_ROOT / "docs" / "API.md"


def contract_rows(text: str) -> list[tuple[list[str], list[str], list[str]]]:
    """[(field paths, sub-fields, enum values)] from the request table."""
    section = text.split("Request body", 1)[1].split("Type and format errors", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        fields = re.findall(r"`([a-z0-9_.]+)`", cells[0])
        subfields = []
        for block in re.findall(r"\{([^}]*)\}", cells[1]):
            subfields += [s.strip().rstrip("?") for s in block.split(",")]
        alternatives = re.search(r"`[a-z_0-9]+`(?:\s*\\\|\s*`[a-z_0-9]+`)+", cells[1] + " " + cells[2])
        enums = re.findall(r"`([a-z_0-9]+)`", alternatives.group()) if alternatives else []
        rows.append((fields, subfields, enums))
    return rows


def resolve(schema: dict, components: dict) -> dict:
    while True:
        if "$ref" in schema:
            schema = components[schema["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in schema:
            schema = next(s for s in schema["anyOf"] if s.get("type") != "null")
        elif schema.get("type") == "array":
            schema = schema["items"]
        else:
            return schema


def field_schema(openapi: dict, path: str) -> dict:
    components = openapi["components"]["schemas"]
    schema = components["DecisionRequest"]
    for part in path.split("."):
        schema = resolve(schema, components)
        assert part in schema.get("properties", {}), f"contract field '{path}' is missing from the OpenAPI document"
        schema = schema["properties"][part]
    return resolve(schema, components)


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("d"))).openapi()


def missing_from(baseline: str, document: str) -> list[str]:
    """The lines of ``baseline`` that ``document`` lacks, or has out of order: ``document`` may
    add lines anywhere (new endpoints, fields, statuses) but remove or change none."""
    lines, at, missing = document.splitlines(), 0, []
    for line in (raw for raw in baseline.splitlines() if raw.strip()):
        try:
            at = lines.index(line, at) + 1
        except ValueError:
            missing.append(line)
    return missing


def test_superset_check_finds_removed_changed_and_reordered_lines():
    base = "# A\n\none\ntwo\nthree\n"
    assert missing_from(base, "# A\n\none\nnew line\ntwo\nthree\nmore\n") == []
    assert missing_from(base, "# A\none\nthree\n") == ["two"]
    assert missing_from(base, "# A\none\ntwo!\nthree\n") == ["two"]
    assert missing_from(base, "# A\nthree\none\ntwo\n") == ["three"]


def test_the_contract_is_a_superset_of_the_v1_baseline():
    if not SHARED.exists():
        pytest.skip(f"*** {SHARED} is not beside this checkout: the contract cannot be compared with the v1 "
                    "baseline here (CI has it) ***")
    missing = missing_from(SHARED.read_text(), COPY.read_text())
    assert not missing, "docs/API.md removed or changed lines of ../shared/API.md:\n" + "\n".join(missing)


def test_every_contract_field_and_enum_is_in_openapi(openapi):
    rows = contract_rows((SHARED if SHARED.exists() else COPY).read_text())
    assert len(rows) >= 30
    checked = 0
    for fields, subfields, enums in rows:
        for path in fields:
            schema = field_schema(openapi, path)
            for sub in subfields:
                props = schema.get("properties", {})
                assert sub in props, f"'{path}.{sub}' is missing from the OpenAPI document"
                checked += 1
            if enums and not subfields:
                assert set(schema.get("enum", [])) == set(enums), f"enum of '{path}' differs"
            elif enums and subfields:
                # e.g. bureau.credit_history, collateral.type: the enum belongs to one sub-field
                matched = [s for s in subfields if set(resolve(schema["properties"][s], openapi["components"]["schemas"]).get("enum", [])) == set(enums)]
                assert matched, f"no sub-field of '{path}' has the enum {enums}"
            checked += 1
    assert checked >= 60


def test_response_fields_match_the_example(openapi):
    text = (SHARED if SHARED.exists() else COPY).read_text()
    example = text.split("Response **200**", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    top = {key for line in example.splitlines() if re.match(r"^ {2}\"", line)
           for key in re.findall(r'"([a-z_]+)":', re.sub(r"\{[^{}]*\}", "{}", line))}
    assert len(top) == 12
    props = openapi["components"]["schemas"]["DecisionResponse"]["properties"]
    assert top <= set(props), top - set(props)
    assert set(resolve(props["outcome"], {}).get("enum", [])) == {"approve", "decline", "refer"}


def test_paths_and_security(openapi):
    paths = openapi["paths"]
    for path in ("/v1/decisions", "/v1/decisions/{decision_id}", "/healthz", "/readyz", "/metrics",
                 "/admin/rules", "/admin/rules/reload"):
        assert path in paths
    post = paths["/v1/decisions"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/DecisionRequest")
    assert {"200", "401", "403", "409", "413", "415", "422", "503"} <= set(post["responses"])
    assert post["security"] == [{"bearer": []}]
    assert "security" not in paths["/healthz"]["get"]


def test_the_document_is_valid_openapi_with_named_operations_and_described_fields(openapi):
    from openapi_spec_validator import validate

    validate(openapi)
    operations = [op for path in openapi["paths"].values() for op in path.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z][A-Za-z]+", i) for i in ids), ids
    undocumented = [f"{name}.{field}" for name, schema in openapi["components"]["schemas"].items()
                    for field, spec in schema.get("properties", {}).items() if not spec.get("description")]
    assert not undocumented
    response = openapi["components"]["schemas"]["DecisionResponse"]["properties"]
    assert all(response[f]["format"] == "date-time" for f in ("decided_at", "disburse_by", "submitted_at"))
    metrics = openapi["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain; version=0.0.4"]
    for op in operations:
        for status, spec in op["responses"].items():
            if status.startswith(("4", "5")):
                assert list(spec["content"]) == ["application/problem+json"], (op["operationId"], status)
                assert spec["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_the_examples_are_valid_and_the_readmes(openapi):
    import orjson

    from service.schemas import DecisionRequest, DecisionResponse

    (request,) = openapi["components"]["schemas"]["DecisionRequest"]["examples"]
    DecisionRequest.model_validate_json(orjson.dumps(request))
    assert request == orjson.loads((REPO_ROOT / "tests/example-application.json").read_bytes())
    (response,) = openapi["components"]["schemas"]["DecisionResponse"]["examples"]
    DecisionResponse.model_validate(response)


async def test_every_documented_status_of_the_decision_endpoint_is_what_a_request_gets(tmp_path):
    """Each error status POST /v1/decisions documents is produced by some request, as
    application/problem+json with the documented shape; and nothing else is produced."""
    import httpx
    import orjson

    from service.runtime import Runtime
    from service.schemas import Problem
    from tests.factories import ADMIN, CLIENT, application

    settings = Settings(data_dir=tmp_path / "data", rate_limits='{"decisions": {"rate": 0.01, "burst": 6}}')
    runtime = Runtime.from_settings(settings)
    runtime.start()
    app = create_app(settings, runtime)
    documented = set(app.openapi()["paths"]["/v1/decisions"]["post"]["responses"])
    body = orjson.dumps(application("doc-1"))
    json_type = {"Content-Type": "application/json"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            async def post(content: bytes, headers: dict) -> httpx.Response:
                return await client.post("/v1/decisions", content=content, headers=headers)

            got = {
                "200": await post(body, {**CLIENT, **json_type}),
                "401": await post(body, json_type),
                "403": await post(body, {**ADMIN, **json_type}),
                "409": await post(orjson.dumps(application("doc-1", loan={"amount": 1234})), {**CLIENT, **json_type}),
                "413": await post(b"{" + b" " * 70_000 + b"}", {**CLIENT, **json_type}),
                "415": await post(body, {**CLIENT, "Content-Type": "text/plain"}),
                "422": await post(b"{", {**CLIENT, **json_type}),
            }
            ruleset, runtime.ruleset = runtime.ruleset, None  # as when no valid ruleset loaded
            got["503"] = await post(orjson.dumps(application("doc-2")), {**CLIENT, **json_type})
            runtime.ruleset = ruleset
            got["429"] = await post(orjson.dumps(application("doc-3")), {**CLIENT, **json_type})  # 6 calls: burst spent
    finally:
        runtime.stop()
    assert {status: resp.status_code for status, resp in got.items()} == {status: int(status) for status in got}
    for status, resp in got.items():
        if status != "200":
            assert resp.headers["content-type"] == "application/problem+json", status
            assert Problem.model_validate_json(resp.content).status == int(status)
    assert set(got) == documented
