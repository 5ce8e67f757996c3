"""nixos/deferred-postfix-maps.nix evaluated for real, against a model of the nixpkgs it uses.

No nixpkgs tree exists here, so tests/nixos/models/mailman-package-set.nix models (with citations)
the pieces the override relies on: the extensible mailman package set, makeOverridable, Python's
withPackages/buildEnv, and requiredPythonModules, which silently drops anything that is not a
Python module of the same interpreter. The real build runs in the nixos-vm-test workflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nixos_support import NIXOS, evaluate_json

MODEL = Path(__file__).resolve().parent / "models" / "mailman-package-set.nix"
WIRING = NIXOS / "deferred-postfix-maps.nix"
MODULE_FILE = "mailman_deferred_mta.py"


def evaluate(nix_instantiate: str, body: str) -> Any:
    expression = f"""
      let
        pkgs = import {MODEL};
        host = import {WIRING} {{ inherit pkgs; }};
        names = env: map (d: d.name) env.paths;
      in {body}
    """
    # --readonly-mode: the module file's store path is computed, nothing is written.
    return evaluate_json(nix_instantiate, "--readonly-mode", "--expr", expression)


@pytest.mark.nix
@pytest.mark.parametrize("hyperkitty", [True, False])
def test_core_environment_gets_the_deferred_class_beside_stock_packages(
    nix_instantiate: str, hyperkitty: bool
) -> None:
    flag = "true" if hyperkitty else "false"
    result = evaluate(
        nix_instantiate,
        f"""let envs = host.services.mailman.packageSet.buildEnvs {{ withHyperkitty = {flag}; }};
            in {{ core = names envs.mailmanEnv; web = names envs.webEnv; }}""",
    )
    stock = ["python3-3.13", "python3.13-mailman-3.3.10", "python3.13-psycopg2"]
    if hyperkitty:
        stock.append("python3.13-mailman-hyperkitty-1.2.1")
    assert result["core"] == [*stock, "mailman-deferred-mta"]
    # mailman-web's interpreter never loads core's MTA class: it stays the stock environment.
    assert result["web"] == ["python3-3.13", "python3.13-mailman-web-0.0.9", "python3.13-psycopg2"]


@pytest.mark.nix
def test_the_module_lands_in_the_interpreters_site_packages(nix_instantiate: str) -> None:
    script = evaluate(
        nix_instantiate,
        """let env = (host.services.mailman.packageSet.buildEnvs { }).mailmanEnv;
           in (builtins.elemAt env.paths 3).script""",
    )
    source, target = script.splitlines()[1].split()[1:]
    assert source.endswith(f"-{MODULE_FILE}")
    assert target == f"$out/lib/python3.13/site-packages/{MODULE_FILE}"


@pytest.mark.nix
def test_core_loads_the_class_the_module_file_defines(nix_instantiate: str) -> None:
    incoming = evaluate(nix_instantiate, "host.services.mailman.settings.mta.incoming")
    module, _, name = incoming.rpartition(".")
    assert f"{module}.py" == MODULE_FILE
    assert f"class {name}(" in (NIXOS / MODULE_FILE).read_text()


@pytest.mark.nix
def test_model_drops_a_path_that_is_not_a_python_module(nix_instantiate: str) -> None:
    """The model keeps nixpkgs' filter, so a wiring without toPythonModule would fail above."""
    result = evaluate(
        nix_instantiate,
        """names (pkgs.mailmanPackages.python3.withPackages
             (ps: [ (pkgs.runCommand "plain" { } "") ]))""",
    )
    assert result == ["python3-3.13"]
