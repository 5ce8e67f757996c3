"""What the Pulumi CLI does with a stack's configuration before it starts the program.

A model of pulumi/pulumi sdk/go/common/workspace/config.go (`mergeConfig`,
`validateStackConfigValues`, `validateStackConfigValue`, `missingStackConfigurationKeysError`)
and project.go (`ValidateConfigValue`, `InferFullTypeName`, `configKeyIsNamespacedByProject`),
the code `pulumi preview`/`up` run on every stack with the project's `config:` declarations:

1. every declared key the stack does not set takes the declaration's `default` (or `value`);
   a project key with neither is missing, and all missing keys fail as one error;
2. every declared key with a `type` is checked: `secret: true` needs a value stored encrypted,
   and the value must be of the type (strings "true"/"false" are booleans, strings that parse as
   integers are integers, arrays check each item);
3. keys the project does not declare pass unchecked (the program checks those itself).

Stack values are given the way the test harness takes them: strings are plain values, lists and
dicts are structured (object) values, other scalars are stored as their YAML text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_INTEGER = re.compile(r"^[+-]?[0-9]+$")  # what Go's strconv.Atoi accepts


class EngineConfigError(Exception):
    """The error the CLI prints instead of running the program."""


@dataclass(frozen=True)
class StackConfig:
    """The configuration the engine hands the program: fully qualified keys."""

    values: dict[str, Any]
    secret_keys: frozenset[str]


def load_project(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


def qualified(project: str, key: str) -> str:
    # config.go `parseConfigKey`: a key without a namespace is in the project's.
    return key if ":" in key else f"{project}:{key}"


def _stack_text(value: Any) -> Any:
    """A scalar stack value as the CLI stores it (text); lists and dicts stay structured."""
    if isinstance(value, str | list | dict):
        return value
    return json.dumps(value)


def _is_integer(value: Any) -> bool:
    # Ints, whole floats (YAML numbers) and strings strconv.Atoi parses.
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return value == int(value)
    return isinstance(value, int) or (isinstance(value, str) and bool(_INTEGER.match(value)))


_SCALAR_CHECKS = {
    "string": lambda value: isinstance(value, str),
    "integer": _is_integer,
    "boolean": lambda value: value in ("true", "false") or isinstance(value, bool),
    "object": lambda value: isinstance(value, dict),
}


def validate_value(type_name: str, items: Mapping[str, Any] | None, value: Any) -> bool:
    """project.go `ValidateConfigValue`."""
    if type_name in _SCALAR_CHECKS:
        return bool(_SCALAR_CHECKS[type_name](value))
    if not isinstance(value, list) or items is None:
        return False
    return all(validate_value(items["type"], items.get("items"), item) for item in value)


def full_type_name(type_name: str, items: Mapping[str, Any] | None) -> str:
    """project.go `InferFullTypeName`."""
    if items is not None:
        return f"array<{full_type_name(items['type'], items.get('items'))}>"
    return type_name


def _missing_error(stack: str, missing: list[str]) -> EngineConfigError:
    # config.go `missingStackConfigurationKeysError` / `formatMissingKeys`.
    missing = sorted(missing)
    if len(missing) == 1:
        return EngineConfigError(f"Stack '{stack}' is missing configuration value '{missing[0]}'")
    listed = ", ".join(f"'{k}'" for k in missing[:-2])
    listed = (listed + ", " if listed else "") + f"'{missing[-2]}' and '{missing[-1]}'"
    return EngineConfigError(f"Stack '{stack}' is missing configuration values {listed}")


def _type_error(project: dict[str, Any], stack: str, config: StackConfig) -> str | None:
    for key, declaration in sorted((project.get("config") or {}).items()):
        if not isinstance(declaration, dict) or "type" not in declaration:
            continue
        full = qualified(project["name"], key)
        if declaration.get("secret") and full not in config.secret_keys:
            return (
                f"Stack '{stack}' with configuration key '{key}' must be encrypted as it's secret"
            )
        if not validate_value(declaration["type"], declaration.get("items"), config.values[full]):
            type_name = full_type_name(declaration["type"], declaration.get("items"))
            return f"Stack '{stack}' with configuration key '{key}' must be of type '{type_name}'"
    return None


def apply_project_config(
    project: dict[str, Any], stack: str, values: Mapping[str, Any], secrets: Iterable[str]
) -> StackConfig:
    """The stack's config after the engine merged and checked it; raises `EngineConfigError`."""
    name = project["name"]
    merged = {qualified(name, k): _stack_text(v) for k, v in values.items()}
    secret_keys = frozenset(qualified(name, k) for k in secrets)
    missing = []
    for key, declaration in sorted((project.get("config") or {}).items()):
        full = qualified(name, key)
        if full in merged:
            continue
        if not isinstance(declaration, dict):  # shorthand `key: value`
            merged[full] = _stack_text(declaration)
        elif "default" in declaration or "value" in declaration:
            merged[full] = _stack_text(declaration.get("default", declaration.get("value")))
        elif full.startswith(f"{name}:"):
            missing.append(key)
    if missing:
        raise _missing_error(stack, missing)
    config = StackConfig(merged, secret_keys)
    error = _type_error(project, stack, config)
    if error is not None:
        raise EngineConfigError(error)
    return config
