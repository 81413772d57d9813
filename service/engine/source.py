"""Safe YAML loading that remembers where every value came from, for file:line:column errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class Position:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem in the risk team's files, printed as ``file:line:col: [rule] reason``."""

    position: Position
    message: str
    rule_id: str | None = None

    def __str__(self) -> str:
        where = f" [{self.rule_id}]" if self.rule_id else ""
        return f"{self.position}:{where} {self.message}"


@dataclass(frozen=True, slots=True)
class Span:
    """Where a text value was written, to find any character of it in the file again."""

    file: str
    text: str  # the whole file
    start: int  # index of the scalar in it
    end: int
    style: str | None  # None (plain), "'", '"', "|" or ">"

    def position(self, value: str, offset: int) -> Position:
        """The file position of character ``offset`` of ``value``. Plain and block scalars keep
        every non-blank character as written (YAML only re-flows the blanks), so the n-th
        non-blank character of the value is the n-th of the source; quoted ones are one line."""
        if self.style in ("'", '"'):
            return self._at(self.start + 1 + offset)
        raw_start = self.start
        if self.style in ("|", ">"):  # the content starts on the line after the indicator
            newline = self.text.find("\n", self.start, self.end)
            raw_start = newline + 1 if newline >= 0 else self.start
        wanted = sum(1 for c in value[:offset] if not c.isspace())
        seen = 0
        for index in range(raw_start, self.end):
            if self.text[index].isspace():
                continue
            if seen == wanted:
                return self._at(index)
            seen += 1
        return self._at(self.end)

    def _at(self, index: int) -> Position:
        line_start = self.text.rfind("\n", 0, index) + 1
        return Position(self.file, self.text.count("\n", 0, index) + 1, index - line_start + 1)


class Located(dict):
    """A mapping from YAML that knows its own position and the position of each value."""

    position: Position
    positions: dict[str, Position]
    spans: dict[str, Span]  # the text values'

    def at(self, key: str) -> Position:
        return self.positions.get(key, self.position)

    def locate(self, key: str, offset: int) -> Position:
        """The file position of character ``offset`` of the text under ``key``."""
        span, value = self.spans.get(key), self.get(key)
        if span is None or not isinstance(value, str):
            return self.at(key)
        return span.position(value, offset)


# libyaml's parser when PyYAML has it: a reload parses every rule file, and the pure-Python
# parser took four fifths of the 37 ms a worker spent compiling the bundled rules.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    filename = "<string>"
    text = ""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Located:  # type: ignore[override]
        written: set[object] = set()
        for key_node, _ in node.value:  # duplicates among the keys actually written
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in written:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark)
            written.add(key_node.value)
        self.flatten_mapping(node)  # `<<: *anchor` entries first, so written keys override them
        out = Located()
        out.position = self._pos(node)
        out.positions = {}
        out.spans = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f"mapping keys must be strings, got {key!r}", key_node.start_mark)
            out[key] = value = self.construct_object(value_node, deep=True)
            if isinstance(value_node, yaml.ScalarNode) and isinstance(value, str):
                span = Span(self.filename, self.text, value_node.start_mark.index, value_node.end_mark.index,
                            value_node.style)
                out.spans[key] = span
                out.positions[key] = span.position(value, len(value) - len(value.lstrip()))
            else:
                out.positions[key] = self._pos(value_node)
        return out

    def _pos(self, node: yaml.Node) -> Position:
        return Position(self.filename, node.start_mark.line + 1, node.start_mark.column + 1)



_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _Loader.construct_mapping)


def load_yaml(path: Path, display_name: str | None = None) -> tuple[Any, list[RuleError]]:
    """Parse one YAML file safely. Returns (document, errors); the document is None on error."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [RuleError(Position(name, 1, 1), f"cannot read file: {exc}")]
    loader = _Loader(text)
    loader.filename = name
    loader.text = text
    try:
        return loader.get_single_data(), []
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Position(name, mark.line + 1, mark.column + 1) if mark else Position(name, 1, 1)
        return None, [RuleError(pos, f"YAML: {exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return None, [RuleError(Position(name, 1, 1), f"YAML: {exc}")]
    finally:
        loader.dispose()
