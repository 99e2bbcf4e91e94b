"""Compose files as data: YAML with Compose's `!override` and `!reset` tags, and the merge of
a second file onto a first by the Compose Specification's rules ("Merge Compose files")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Attributes whose value a later file replaces instead of extending (the specification's
# "shell commands" exception).
REPLACED = {("command",), ("entrypoint",), ("healthcheck", "test")}


@dataclass(frozen=True)
class Override:
    """A value tagged `!override`: it replaces the earlier file's value whole."""

    value: Any


@dataclass(frozen=True)
class Reset:
    """A value tagged `!reset`: the attribute is removed."""

    value: Any


class _Loader(yaml.SafeLoader):
    pass


def _tagged(kind: type[Override] | type[Reset]) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Override | Reset:
        if isinstance(node, yaml.MappingNode):
            return kind(loader.construct_mapping(node, deep=True))
        if isinstance(node, yaml.SequenceNode):
            return kind(loader.construct_sequence(node, deep=True))
        return kind(loader.construct_scalar(node))

    return construct


_Loader.add_constructor("!override", _tagged(Override))
_Loader.add_constructor("!reset", _tagged(Reset))


def load(path: Path) -> dict[str, Any]:
    """A Compose file as Python data (YAML merge keys `<<` applied; tags kept as markers)."""
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


def plain(value: Any) -> Any:
    """`value` without tag markers, as Compose reads one file on its own."""
    if isinstance(value, Override | Reset):
        return plain(value.value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    """`override` merged onto `base`: mappings key by key, sequences appended (the shell
    commands replaced), scalars replaced; `!override` replaces and `!reset` removes."""
    if isinstance(override, Override):
        return plain(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, Reset):
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value, (*path, key))
            else:
                merged[key] = plain(value)
        return merged
    attribute = path[2:] if path[:1] == ("services",) else ()
    if isinstance(base, list) and isinstance(override, list) and attribute not in REPLACED:
        return base + plain(override)
    return plain(override)
