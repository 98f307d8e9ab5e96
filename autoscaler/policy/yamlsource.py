"""YAML loading that remembers where every key came from.

Configuration errors must name the file, the field path and the line, and pydantic only knows
the path. So instead of ``yaml.safe_load`` we compose the node tree with PyYAML's safe loader
(no arbitrary objects, same resolution rules as ``safe_load``), build plain Python values from
it, and record the line of every mapping key and sequence item on the way. Duplicate keys,
which ``safe_load`` silently collapses to the last one, are reported as errors here: in a
capacity file a silently ignored ``maxCapacity`` is a costly surprise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]

# The C loader is much faster and behaves the same; fall back to the pure-Python one.
# Aliases can make a tiny file expand exponentially ("billion laughs"); configs are small.
_MAX_NODES = 100_000

_PLAIN_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})

_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed YAML document plus the 1-based line of each key path in it."""

    source: str
    data: Any
    lines: Mapping[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of the deepest prefix of ``path`` that exists in the file (None: not in it).

        A missing field points at its parent mapping's key, the nearest place to add it.
        """
        key = tuple(path)
        while key:
            line = self.lines.get(key)
            if line is not None:
                return line
            key = key[:-1]
        return None

    def where(self, path: Sequence[str | int]) -> str:
        """``FILE:LINE`` (or ``FILE`` alone when no line applies), for messages."""
        line = self.line_of(path)
        return f"{self.source}:{line}" if line is not None else self.source


class YamlError(Exception):
    """The text is not valid YAML (or repeats a key); ``problems`` are ready to print."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("; ".join(problems))


def format_path(path: Sequence[str | int]) -> str:
    """``spec.locations.us-east-2.maxCapacity``, ``spec.behavior.scaleUp.policies[0].value``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse one YAML document. An empty document yields ``data=None``.

    Raises ``YamlError`` with ``FILE:LINE:COLUMN`` from PyYAML's mark on syntax errors, and
    with every duplicated key otherwise.
    """
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        raise YamlError(source, [_describe_yaml_error(source, error)]) from None
    except yaml.reader.ReaderError as error:  # a control character or bad encoding
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        reason = (
            f"unacceptable character #x{error.character:04x}"
            if isinstance(error.character, int)
            else error.reason
        )
        raise YamlError(source, [f"{source}:{line}:{column}: invalid YAML: {reason}"]) from None
    except yaml.YAMLError as error:
        raise YamlError(source, [f"{source}: invalid YAML: {error}"]) from None
    finally:
        loader.dispose()
    if node is None:
        return YamlDocument(source=source, data=None)
    builder = _Builder(source, loader)
    try:
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as error:  # e.g. a bad !!timestamp or an unknown tag
        raise YamlError(source, [_describe_yaml_error(source, error)]) from None
    if builder.problems:
        raise YamlError(source, builder.problems)
    return YamlDocument(source=source, data=data, lines=builder.lines)


def read_yaml_file(path: Path) -> YamlDocument:
    """Read and parse ``path``; unreadable files raise ``YamlError`` naming the file."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlError(source, [f"{source}: file not found"]) from None
    except IsADirectoryError:
        raise YamlError(source, [f"{source}: is a directory, expected a YAML file"]) from None
    except UnicodeDecodeError as error:
        raise YamlError(
            source, [f"{source}: not UTF-8 text (byte {error.start}): {error.reason}"]
        ) from None
    except OSError as error:
        raise YamlError(source, [f"{source}: cannot read: {error.strerror}"]) from None
    return parse_yaml(text, source)


def _describe_yaml_error(source: str, error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    parts = [p for p in (error.context, error.problem) if p]
    return f"{where}: invalid YAML: {', '.join(parts) or 'syntax error'}"


class _Builder:
    """Turns a composed node tree into plain values, recording key lines on the way."""

    def __init__(self, source: str, loader: yaml.SafeLoader) -> None:
        self.source = source
        self.loader = loader
        self.lines: dict[PathKey, int] = {}
        self.problems: list[str] = []
        self.nodes = 0
        self.active: set[int] = set()  # ids of the collections being built (recursion guard)

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            mark = node.start_mark
            raise YamlError(
                self.source,
                [
                    f"{self.source}:{mark.line + 1}: document expands to more than "
                    f"{_MAX_NODES} values (aliases?); a configuration file never needs that"
                ],
            )
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if node.tag not in _PLAIN_COLLECTION_TAGS:  # !!set, !!omap, !!python/...: refused
                mark = node.start_mark
                raise YamlError(
                    self.source,
                    [
                        f"{self.source}:{mark.line + 1}:{mark.column + 1}: invalid YAML: could "
                        f"not determine a constructor for the tag {node.tag!r}"
                    ],
                )
            if id(node) in self.active:
                line = node.start_mark.line + 1
                raise YamlError(
                    self.source, [f"{self.source}:{line}: an alias refers to itself (recursive)"]
                )
            self.active.add(id(node))
            try:
                return self._build_collection(node, path)
            finally:
                self.active.discard(id(node))
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as error:  # e.g. ``2024-13-45`` read as a date
            line = node.start_mark.line + 1
            self.problems.append(
                f"{self.source}:{line}: {format_path(path)}: cannot read value "
                f"{node.value!r}: {error}; quote it if it is meant as text"
            )
            return None

    def _build_collection(self, node: yaml.Node, path: PathKey) -> Any:
        if isinstance(node, yaml.MappingNode):
            # Resolves ``<<`` merge keys in place, exactly as safe_load would.
            self.loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, path)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    line = key_node.start_mark.line + 1
                    self.problems.append(
                        f"{self.source}:{line}: {format_path(path)}: "
                        "mapping keys must be plain scalars"
                    )
                    continue
                if key in result:
                    line = key_node.start_mark.line + 1
                    first = self.lines.get((*path, _path_part(key)))
                    self.problems.append(
                        f"{self.source}:{line}: {format_path((*path, _path_part(key)))}: "
                        f"duplicate key (first defined on line {first}); keep only one"
                    )
                    continue
                self.lines[(*path, _path_part(key))] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, (*path, _path_part(key)))
            return result
        if isinstance(node, yaml.SequenceNode):
            items: list[Any] = []
            for index, item in enumerate(node.value):
                self.lines[(*path, index)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, index)))
            return items
        raise AssertionError(node)  # pragma: no cover  (only collections come here)


def _path_part(key: Any) -> str | int:
    # Paths use strings for mapping keys so they line up with pydantic's error locations.
    return key if isinstance(key, str) else str(key)
