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


class Located(dict):
    """A mapping from YAML that knows its own position and the position of each value."""

    position: Position
    positions: dict[str, Position]

    def at(self, key: str) -> Position:
        return self.positions.get(key, self.position)


# libyaml's parser when PyYAML has it: a reload parses every rule file, and the pure-Python
# parser took four fifths of the 37 ms a worker spent compiling the bundled rules.
_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc, valid-type]
    filename = "<string>"

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
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f"mapping keys must be strings, got {key!r}", key_node.start_mark)
            out[key] = self.construct_object(value_node, deep=True)
            out.positions[key] = self._value_pos(value_node)
        return out

    def _pos(self, node: yaml.Node) -> Position:
        return Position(self.filename, node.start_mark.line + 1, node.start_mark.column + 1)

    def _value_pos(self, node: yaml.Node) -> Position:
        # A block scalar (`when: |`) starts on the line after its indicator.
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            return Position(self.filename, node.start_mark.line + 2, node.start_mark.column + 3)
        # Quoted scalars: point at the first character inside the quotes.
        shift = 1 if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"') else 0
        return Position(self.filename, node.start_mark.line + 1, node.start_mark.column + 1 + shift)


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
