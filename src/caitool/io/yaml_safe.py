"""YAML read safely and in bounded time: safe types only, and no alias bomb.

YAML aliases (``*a``) refer back to anchored values; each level of a "billion laughs"
document multiplies the one before, so a few hundred bytes stand for billions of values.
PyYAML builds them as shared objects, but anything that then walks or prints the data (a
config check, an error message) expands them. So the document's size with every alias
expanded is counted on the parsed node graph, which costs time in proportion to the file,
and a document that grows too large (or refers to itself) is refused before a value is built.
"""

from __future__ import annotations

from typing import Any

import yaml

# Values a document may expand to through its aliases: far beyond any constitution or
# training config, far below what would hurt (and never less than ten times its own size).
MAX_EXPANDED = 100_000
EXPANSION = 10


class YAMLTooLarge(yaml.YAMLError):
    """Refused before building: ``problem`` says why (read as PyYAML's errors are)."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose tree (aliases expanded) is too large, or which holds a cycle."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YAMLTooLarge("an alias refers to a value that contains it (a recursive document)")
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    limit = max(MAX_EXPANDED, EXPANSION * len(sizes))
    if sizes[id(root)] > limit:
        raise YAMLTooLarge(f"aliases expand it past {limit:,} values; refused as an alias bomb")


def load(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing alias bombs and nesting too deep to parse."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_expansion(node)
        return loader.construct_document(node)
    except RecursionError:
        raise YAMLTooLarge("nested too deeply") from None
    finally:
        loader.dispose()
