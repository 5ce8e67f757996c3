"""The VM test's Python test script compiles (the VM test itself needs Nix and KVM)."""

from __future__ import annotations

import ast
import re
import textwrap

from nixos_support import NIXOS

VM_TEST = NIXOS / "tests" / "mailman-site.nix"


def _test_script() -> str:
    source = VM_TEST.read_text()
    match = re.search(r"testScript = ''\n(.*?)\n  '';", source, re.DOTALL)
    assert match is not None, "testScript = '' ... ''; not found"
    # Nix interpolations become a Python name: in a string they stay text, bare they are names.
    return textwrap.dedent(re.sub(r"\$\{[^}]*\}", "NIX_VALUE", match.group(1)))


def test_vm_test_script_is_valid_python() -> None:
    ast.parse(_test_script(), filename=str(VM_TEST))


def test_vm_test_script_reads_the_mta_sts_policy_nix_renders() -> None:
    script = _test_script()
    assert "/.well-known/mta-sts.txt" in script
    assert "${builtins.toJSON deployment.mtaSts.policy}" in VM_TEST.read_text()
