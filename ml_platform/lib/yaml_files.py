"""Reading the YAML files a team writes (the project config, the known-hard cases): yaml.safe_load, except that a
key given twice in one mapping is an error. YAML keeps the last one without a word, so a `min_improvement:` added
at the top of `gate:`, above the one already there, would not count."""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(f"'{key}' is set twice in one section (lines {seen[key]} and {line}); YAML "
                                        "would keep only the last: remove one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
