"""The option paths a NixOS module defines, read with the tree-sitter Nix grammar (tree-sitter-nix).

`check_module` walks a module's config tree the way the module system sees it, looking through
`lib.mkIf`, `lib.mkMerge`, `lib.mkDefault`/`mkForce`/`mkBefore`/`mkAfter`, `lib.optionalAttrs`,
`//`, `if ... then ... else` and `lib.genAttrs`/`lib.mapAttrs` (whose names are dynamic), and
compares every path against an `OptionList`: the 26.05 option paths taken from the nixpkgs
module sources (options-26.05.txt beside this file). A value the walk cannot see into, at a
path that is not itself an option, is an error too: the check never passes by not looking.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tree_sitter_nix
from tree_sitter import Language, Node, Parser

#: A path segment whose name is computed (`${x}`, "acme-${x}", genAttrs): only `<name>` matches it.
DYNAMIC = "${...}"

# Functions that pass (one of) their arguments through as the value at the same path.
_PASS_LAST_ARGUMENT = {
    "mkIf",
    "optionalAttrs",
    "mkDefault",
    "mkForce",
    "mkOverride",
    "mkBefore",
    "mkAfter",
    "mkOrder",
}
_MODULE_KEYS = {"imports", "options", "config", "meta", "disabledModules", "_file", "key"}


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_nix.language()))


def parse(source: str) -> Node:
    """The syntax tree of a Nix file; raises ValueError on a syntax error."""
    root = _parser().parse(source.encode()).root_node
    if root.has_error:
        raise ValueError(f"Nix syntax error near: {_first_error(root)}")
    return root


def _first_error(node: Node) -> str:
    for child in node.children:
        if child.type == "ERROR" or child.is_missing:
            return _text(child)[:80]
        if child.has_error:
            return _first_error(child)
    return _text(node)[:80]


def _text(node: Node) -> str:
    return (node.text or b"").decode()


@dataclass(frozen=True)
class OptionList:
    """Option paths, one a line: `<name>` is any one segment, a trailing `.*` anything below."""

    exact: tuple[tuple[str, ...], ...]
    free: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, text: str) -> OptionList:
        exact: list[tuple[str, ...]] = []
        free: list[tuple[str, ...]] = []
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.endswith(".*"):
                free.append(tuple(line[:-2].split(".")))
            else:
                exact.append(tuple(line.split(".")))
        return cls(tuple(exact), tuple(free))

    @classmethod
    def read(cls, path: Path) -> OptionList:
        return cls.parse(path.read_text())

    def is_option(self, path: tuple[str, ...]) -> bool:
        """True if `path` is an option, or lies inside a free-form option."""
        return any(_matches(entry, path) for entry in self.exact) or self.is_free(path)

    def is_free(self, path: tuple[str, ...]) -> bool:
        """True if `path` is a free-form option or lies inside one."""
        return any(
            len(path) >= len(entry) and _matches(entry, path[: len(entry)]) for entry in self.free
        )

    def is_prefix(self, path: tuple[str, ...]) -> bool:
        """True if options exist below `path`, so an attribute set there is walked into."""
        return any(
            len(entry) > len(path) and _matches(entry[: len(path)], path)
            for entry in (*self.exact, *self.free)
        )


def _matches(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if len(pattern) != len(path):
        return False
    return all(
        p == "<name>" or (p == s and s != DYNAMIC) for p, s in zip(pattern, path, strict=True)
    )


def display(path: tuple[str, ...]) -> str:
    return ".".join(path)


@dataclass
class _Walk:
    options: OptionList
    defined: list[tuple[str, ...]]
    errors: list[str]

    def value(self, path: tuple[str, ...], node: Node) -> None:
        node = _unwrap(node)
        is_attrset = node.type in ("attrset_expression", "rec_attrset_expression")
        if (
            path
            and self.options.is_option(path)
            and not (is_attrset and self.options.is_free(path))
        ):
            self.defined.append(path)
        elif is_attrset:
            self.attrset(path, node)
        elif not self.passed_through(path, node):
            self.leaf(path, opaque=node.type not in _PLAIN_VALUES)

    def attrset(self, path: tuple[str, ...], node: Node) -> None:
        if path and not (self.options.is_prefix(path) or self.options.is_free(path)):
            self.errors.append(f"{display(path)}: no such option in NixOS 26.05")
            return
        for sub_path, sub_node in _bindings(node):
            if sub_node is None:  # inherit: a plain value
                self.leaf(path + sub_path)
            else:
                self.value(path + sub_path, sub_node)

    def passed_through(self, path: tuple[str, ...], node: Node) -> bool:
        """Walks into the values the module system sees through; False if there are none."""
        parts: list[tuple[tuple[str, ...], Node]] = []
        if node.type == "binary_expression" and _operator(node) == "//":
            parts = [(path, _field(node, "left")), (path, _field(node, "right"))]
        elif node.type == "if_expression":
            parts = [(path, _field(node, "consequence")), (path, _field(node, "alternative"))]
        elif node.type == "apply_expression":
            parts = _applied_values(path, node)
        for part_path, part in parts:
            self.value(part_path, part)
        return bool(parts)

    def leaf(self, path: tuple[str, ...], *, opaque: bool = False) -> None:
        if self.options.is_option(path):
            self.defined.append(path)
        elif opaque and self.options.is_prefix(path):
            self.errors.append(
                f"{display(path)}: value cannot be checked (write the attribute set out literally)"
            )
        else:
            self.errors.append(f"{display(path)}: no such option in NixOS 26.05")


def _applied_values(path: tuple[str, ...], node: Node) -> list[tuple[tuple[str, ...], Node]]:
    head, args = _application(node)
    name = _function_name(head)
    last = _unwrap(args[-1])
    if name in _PASS_LAST_ARGUMENT:
        return [(path, last)]
    if name == "mkMerge" and last.type == "list_expression":
        return [(path, element) for element in _list_elements(last)]
    if name in ("genAttrs", "mapAttrs") and len(args) == 2:
        function = _unwrap(args[0] if name == "mapAttrs" else args[1])
        if function.type == "function_expression":
            return [((*path, DYNAMIC), _function_body(function))]
    return []


_PLAIN_VALUES = {
    "string_expression",
    "indented_string_expression",
    "integer_expression",
    "float_expression",
    "list_expression",
    "path_expression",
    "function_expression",
}


def _unwrap(node: Node) -> Node:
    while node.type == "parenthesized_expression":
        node = node.named_children[0]
    return node


def _field(node: Node, name: str) -> Node:
    child = node.child_by_field_name(name)
    if child is None:
        raise ValueError(f"{node.type} without {name}: {_text(node)[:80]}")
    return child


def _operator(node: Node) -> str:
    operator = node.child_by_field_name("operator")
    return _text(operator) if operator is not None else ""


def _application(node: Node) -> tuple[Node, list[Node]]:
    args: list[Node] = []
    while node.type == "apply_expression":
        args.insert(0, _field(node, "argument"))
        node = _unwrap(_field(node, "function"))
    return node, args


def _function_name(node: Node) -> str:
    if node.type == "variable_expression":
        return _text(_field(node, "name"))
    if node.type == "select_expression":
        attrs = _field(node, "attrpath").named_children
        return _text(attrs[-1]) if attrs else ""
    return ""


def _function_body(node: Node) -> Node:
    node = _unwrap(node)
    while node.type == "function_expression":
        node = _unwrap(_field(node, "body"))
    return node


def _list_elements(node: Node) -> list[Node]:
    return [child for child in node.named_children if child.type != "comment"]


def _segment(node: Node) -> str:
    if node.type == "identifier":
        return _text(node)
    if node.type == "string_expression":
        parts = [child for child in node.named_children if child.type != "comment"]
        if all(part.type in ("string_fragment", "escape_sequence") for part in parts):
            return "".join(_text(part) for part in parts)
    return DYNAMIC


def _attrpath(node: Node) -> tuple[str, ...]:
    return tuple(_segment(attr) for attr in node.named_children if attr.type != "comment")


def _bindings(attrset: Node) -> Iterator[tuple[tuple[str, ...], Node | None]]:
    for binding_set in attrset.named_children:
        if binding_set.type != "binding_set":
            continue
        for binding in binding_set.named_children:
            if binding.type == "binding":
                yield _attrpath(_field(binding, "attrpath")), _field(binding, "expression")
            elif binding.type in ("inherit", "inherit_from"):
                attrs = binding.child_by_field_name("attrs")
                for name in attrs.named_children if attrs is not None else []:
                    yield (_segment(name),), None


def _module_body(expression: Node) -> Node:
    node = _unwrap(expression)
    while node.type in ("function_expression", "let_expression"):
        node = _unwrap(_field(node, "body"))
    if node.type not in ("attrset_expression", "rec_attrset_expression"):
        raise ValueError(f"not a NixOS module (an attribute set): {_text(node)[:80]}")
    return node


@dataclass(frozen=True)
class ModuleCheck:
    defined: tuple[tuple[str, ...], ...]
    errors: tuple[str, ...]


def check_module(source: str, options: OptionList) -> ModuleCheck:
    """Every option path the module defines, and an error for each that NixOS 26.05 lacks."""
    return _check_body(_module_body(_field(parse(source), "expression")), options)


def check_test_nodes(source: str, options: OptionList) -> dict[str, ModuleCheck]:
    """`check_module` for each `nodes.<name>` module of a NixOS VM test file."""
    checks: dict[str, ModuleCheck] = {}
    stack = [parse(source)]
    while stack:
        node = stack.pop()
        if node.type == "binding":
            path = _attrpath(_field(node, "attrpath"))
            if len(path) == 2 and path[0] == "nodes":
                checks[path[1]] = _check_body(_module_body(_field(node, "expression")), options)
                continue
        stack.extend(node.children)
    return checks


def _check_body(body: Node, options: OptionList) -> ModuleCheck:
    walk = _Walk(options, [], [])
    bindings = list(_bindings(body))
    explicit_config = any(path[0] in ("config", "options") for path, _ in bindings)
    for path, node in bindings:
        if explicit_config:
            if path[0] == "config" and node is not None:
                walk.value(path[1:], node)
        elif path[0] not in _MODULE_KEYS:
            if node is None:
                walk.leaf(path)
            else:
                walk.value(path, node)
    return ModuleCheck(tuple(walk.defined), tuple(walk.errors))


def selected_attributes(source: str, variable: str) -> set[str]:
    """Names read as `<variable>.<name>` anywhere in a Nix file."""
    found: set[str] = set()
    stack = [parse(source)]
    while stack:
        node = stack.pop()
        if node.type == "select_expression":
            base = _unwrap(_field(node, "expression"))
            if base.type == "variable_expression" and _text(_field(base, "name")) == variable:
                attrs = _field(node, "attrpath").named_children
                if attrs:
                    found.add(_segment(attrs[0]))
        stack.extend(node.children)
    return found


@dataclass(frozen=True)
class ShellScript:
    """A shell script embedded in a Nix file, interpolations replaced by a store-path stand-in."""

    name: str
    text: str


STORE_PATH_STANDIN = "/nix/store/00000000000000000000000000000000-standin"


def embedded_shell_scripts(source: str, directory: Path) -> list[ShellScript]:
    """Scripts in `writeShellScript`/`writeShellApplication` calls and systemd `script`s.

    `builtins.readFile ./x.sh` appended to the text is read from `directory`, so a
    writeShellApplication is checked as the whole script Nix builds.
    """
    scripts: list[ShellScript] = []
    stack = [parse(source)]
    while stack:
        node = stack.pop()
        if node.type == "apply_expression":
            head, args = _application(node)
            name = _function_name(head)
            if name == "writeShellScript" and len(args) == 2:
                text = _shell_text(args[1], directory)
                if text is not None:
                    scripts.append(ShellScript(_string_value(args[0]), text))
            elif name == "writeShellApplication" and args:
                fields = dict(_named_bindings(_unwrap(args[-1])))
                text = _shell_text(fields["text"], directory) if "text" in fields else None
                if text is not None:
                    scripts.append(ShellScript(_string_value(fields.get("name")), text))
        elif node.type == "binding":
            path = _attrpath(_field(node, "attrpath"))
            if path[-1] == "script":
                text = _shell_text(_field(node, "expression"), directory)
                if text is not None:
                    scripts.append(ShellScript(display(path), text))
        stack.extend(node.children)
    return scripts


def _named_bindings(node: Node) -> Iterator[tuple[str, Node]]:
    if node.type in ("attrset_expression", "rec_attrset_expression"):
        for path, value in _bindings(node):
            if len(path) == 1 and value is not None:
                yield path[0], value


def _string_value(node: Node | None) -> str:
    if node is None:
        return "?"
    node = _unwrap(node)
    if node.type == "string_expression":
        return _segment(node)
    return _text(node)


def _shell_text(node: Node, directory: Path) -> str | None:
    node = _unwrap(node)
    if node.type == "indented_string_expression":
        return _indented_string(node)
    if node.type == "binary_expression" and _operator(node) == "+":
        left = _shell_text(_field(node, "left"), directory)
        right = _shell_text(_field(node, "right"), directory)
        if left is not None and right is not None:
            return left + right
        return None
    if node.type == "apply_expression":
        head, args = _application(node)
        if _function_name(head) == "readFile" and _unwrap(args[-1]).type == "path_expression":
            return (directory / _text(_unwrap(args[-1]))).read_text()
    return None


def _indented_string(node: Node) -> str:
    """The string's text as Nix builds it: common indentation removed, `${...}` as a stand-in."""
    source = node.text or b""
    start = node.start_byte
    pieces: list[str] = []
    cursor = start + 2  # after the opening ''
    for child in node.children:
        if child.type == "interpolation":
            pieces.append(source[cursor - start : child.start_byte - start].decode())
            pieces.append(STORE_PATH_STANDIN)
            cursor = child.end_byte
    pieces.append(source[cursor - start : node.end_byte - start - 2].decode())
    text = "".join(pieces).replace("''$", "$").replace("'''", "''")
    return textwrap.dedent(text.lstrip("\n").rstrip(" "))
