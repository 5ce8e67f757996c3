"""The Nix side reads exactly the keys of components/deployment.schema.json, no more and no fewer.

(The Python renderer's side of the contract is checked against the same schema by its own tests.)
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from nix_options import selected_attributes
from nixos_support import NIXOS, SCHEMA, EvalError

# Objects of the document, by path, with the name of the Nix binding that holds the checked set.
OBJECTS = {
    "nixpkgs": "nixpkgs",
    "network": "network",
    "dataVolume": "dataVolume",
    "mtaSts": "mtaSts",
    "backup": "backup",
    "backup.keep": "keep",
}


def _spec(schema: dict[str, Any], path: str) -> dict[str, Any]:
    spec = schema
    for part in path.split("."):
        spec = spec["properties"][part]
    return spec


def schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Every leaf key of the document, dotted (objects are not keys, their members are)."""
    keys = set()
    for name, spec in schema["properties"].items():
        if spec.get("type") == "object":
            keys |= schema_keys(spec, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def nix_read_keys() -> set[str]:
    source = (NIXOS / "deployment.nix").read_text()
    keys = selected_attributes(source, "top") - set(OBJECTS)
    for path, binding in OBJECTS.items():
        keys |= {f"{path}.{sub}" for sub in selected_attributes(source, binding)}
    return keys - set(OBJECTS)


def test_nix_reads_the_schema_keys_exactly(schema) -> None:
    assert nix_read_keys() == schema_keys(schema)


def test_schema_requires_every_key_and_allows_no_other(schema) -> None:
    objects = [schema] + [_spec(schema, path) for path in OBJECTS]
    for spec in objects:
        assert spec["additionalProperties"] is False
        assert set(spec["required"]) == set(spec["properties"])


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    *parents, last = key.split(".")
    target = changed
    for parent in parents:
        target = target[parent]
    del target[last]
    return changed


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "schema_key" in metafunc.fixturenames:
        schema = json.loads(SCHEMA.read_text())
        metafunc.parametrize("schema_key", sorted(schema_keys(schema)))


@pytest.mark.nix
def test_missing_key_stops_evaluation_naming_it(evaluate, production_document, schema_key) -> None:
    with pytest.raises(EvalError, match=f"deployment.json: {schema_key}: expected a value"):
        evaluate(_without(production_document, schema_key))


@pytest.mark.nix
@pytest.mark.parametrize("where", ["", *(f"{path}." for path in OBJECTS)])
def test_unknown_key_stops_evaluation_naming_it(evaluate, production_document, where) -> None:
    document = copy.deepcopy(production_document)
    target = document
    for part in filter(None, where.split(".")):
        target = target[part]
    target["smtpRelay"] = "mail.example.net"
    with pytest.raises(EvalError, match=f"deployment.json: {where}smtpRelay: expected no such key"):
        evaluate(document)
