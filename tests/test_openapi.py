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
