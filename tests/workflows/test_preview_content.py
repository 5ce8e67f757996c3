"""What a `preview` PR comment can show: the program, run on this repository's real nixos/ and
lists.yaml under Pulumi mocks, must carry every NixOS file and every list setting as plain text.

`pulumi preview --diff` prints changed inputs; secret inputs print as `[secret]`. So a reviewer
sees the changed Nix lines and list settings only if they travel in plain (non-secret) inputs.
"""

from __future__ import annotations

import pytest
import yaml

from components.nixos import read_nixos_tree
from components.site import NIXOS_DIR
from tests.harness import ProgramRun, plain_strings, run_program
from tests.workflows.conftest import ROOT

LISTS_FILE = ROOT / "lists.yaml"
SITE = "lists.example.org"
SITE_OWNER = "postmaster@example.org"


@pytest.fixture(scope="module")
def preview() -> ProgramRun:
    return run_program(
        {
            "hostname": SITE,
            "adminEmail": SITE_OWNER,
            "dnsZone": "example.org",
            "lists": str(LISTS_FILE),
        },
        preview=True,
    )


def plain_inputs(run: ProgramRun) -> list[str]:
    return [text for r in run.resources for text in plain_strings(r.raw_inputs)]


def nixos_files() -> dict[str, str]:
    files = read_nixos_tree(NIXOS_DIR)
    return {name: text for name, text in files.items() if name.endswith(".nix")}


def test_the_repository_has_nixos_modules_to_preview() -> None:
    assert "configuration.nix" in nixos_files()


@pytest.mark.parametrize("name", sorted(nixos_files()))
def test_nixos_file_is_a_plain_input_so_its_changed_lines_show(preview, name: str) -> None:
    text = nixos_files()[name]

    assert any(text in plain for plain in plain_inputs(preview)), name


def test_every_list_setting_is_in_a_plain_input(preview) -> None:
    entries = yaml.safe_load(LISTS_FILE.read_text(encoding="utf-8"))["lists"]
    plain = "\n".join(plain_inputs(preview))

    assert entries
    for entry in entries:
        for field, value in entry.items():
            if field == "address" and "@" not in value:
                shown = f"address: {value}@{SITE}"  # a bare list name: first mail domain
            elif isinstance(value, str | bool | int) and field != "absent":
                shown = yaml.safe_dump({field: value}).strip()
            else:
                continue
            assert shown in plain, f"{entry['address']}: {shown} not readable in a preview"


def test_the_resolved_owners_are_in_a_plain_input(preview) -> None:
    # lists.yaml leaves `owners` out: the reviewer still sees who will own each list.
    entries = yaml.safe_load(LISTS_FILE.read_text(encoding="utf-8"))["lists"]
    plain = "\n".join(plain_inputs(preview))

    assert not [entry for entry in entries if "owners" in entry]
    assert plain.count(f"  owners:\n  - {SITE_OWNER}\n") == len(entries)


def test_the_deployment_document_is_a_plain_input(preview) -> None:
    plain = plain_inputs(preview)

    assert any('"nixosRelease": "nixos-26.05"' in text for text in plain)


def test_the_dmarc_default_shows_for_lists_that_do_not_name_it(preview) -> None:
    # lists.yaml's discuss list leaves dmarc_mitigate_action out; the preview shows what it gets.
    entries = yaml.safe_load(LISTS_FILE.read_text(encoding="utf-8"))["lists"]
    plain = "\n".join(plain_inputs(preview))

    assert [e for e in entries if "dmarc_mitigate_action" not in e]
    assert plain.count("dmarc_mitigate_action: munge_from") == len(entries)
