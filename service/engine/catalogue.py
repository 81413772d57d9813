"""The rule language's reference, generated from the code that defines it: every fact with its
type, values and meaning, every function with its signature. `loan-decision rules facts`
prints it as Markdown (docs/RULES.md embeds it) or JSON (for editors' completion and hover)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from service.engine.facts import CATALOGUE, DERIVED, ENUMS, NOTES, PRODUCT, STAGE
from service.engine.functions import REGISTRY
from service.engine.named import DerivedFact
from service.schemas import DecisionRequest

SOURCES = (("request", "the application as posted (docs/API.md)"),
           ("derived", "computed from the application before any rule runs"),
           ("product", "the application's product in rules/products.yaml"),
           ("stage", "added while the decision runs: providers, whitelist, velocity, lists, score"),
           ("derived.yaml", "the ruleset's named expressions (rules/derived.yaml), computed where they are read"))


def _descriptions(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for name, field in model.model_fields.items():
        path = prefix + name
        out[path] = " ".join((field.description or "").split())
        nested = [a for a in getattr(field.annotation, "__args__", (field.annotation,)) if isinstance(a, type)
                  and issubclass(a, BaseModel)]
        if nested:
            out |= _descriptions(nested[0], path + ".")
    return out


def _source(path: str) -> str:
    if path in DERIVED:
        return "derived"
    if path in PRODUCT:
        return "product"
    return "stage" if path in STAGE else "request"


def facts(derived: Mapping[str, DerivedFact] | None = None) -> dict[str, dict[str, Any]]:
    """Every fact; with ``derived`` (a ruleset's), its named expressions too."""
    described = _descriptions(DecisionRequest)
    out: dict[str, dict[str, Any]] = {}
    for path, kind in CATALOGUE.items():
        entry: dict[str, Any] = {"type": kind, "source": _source(path),
                                 "description": NOTES.get(path) or described.get(path, "")}
        if path in ENUMS:
            entry["values"] = sorted(ENUMS[path])
        out[path] = entry
    for name, fact in (derived or {}).items():
        out[f"derived.{name}"] = {"type": fact.type, "source": "derived.yaml",
                                  "description": fact.description or fact.expression, "expression": fact.expression}
    return out


def functions() -> dict[str, dict[str, Any]]:
    return {name: {"signature": spec.signature(name), "args": list(spec.args), "returns": spec.returns,
                   "variadic": spec.variadic, "literal_args": list(spec.literal_args), "summary": spec.summary}
            for name, spec in sorted(REGISTRY.items())}


def as_json(derived: Mapping[str, DerivedFact] | None = None) -> dict[str, Any]:
    return {"facts": facts(derived), "functions": functions()}


def as_markdown(derived: Mapping[str, DerivedFact] | None = None) -> str:
    described = facts(derived)
    lines: list[str] = []
    for source, meaning in SOURCES:
        lines += [f"### Facts: {source}", "", f"{meaning[0].upper()}{meaning[1:]}.", "",
                  "| fact | type | meaning |", "| --- | --- | --- |"]
        for path, entry in described.items():
            if entry["source"] != source:
                continue
            values = f" One of: {', '.join(entry['values'])}." if "values" in entry else ""
            lines.append(f"| `{path}` | {entry['type']} | {_cell((entry['description'] + values).strip())} |")
        lines.append("")
    lines += ["### Functions", "", "| function | what it gives |", "| --- | --- |"]
    for entry in functions().values():
        lines.append(f"| `{_cell(entry['signature'])}` | {_cell(entry['summary'])} |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
