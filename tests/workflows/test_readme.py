"""README: its config table is the settings code; its quick start is `pulumi new` + `pulumi up`,
then what deploy.sh takes."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.workflows.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_config_rows() -> list[list[str]]:
    block = README.split("<!-- config-table:start -->")[1].split("<!-- config-table:end -->")[0]
    lines = [line for line in block.strip().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def render_row(name: str, type_: str, default: str, description: str) -> list[str]:
    return [f"`{name}`", type_, default, description]


def settings_module():
    try:
        from components import settings  # noqa: PLC0415 - written on the program branch
    except ImportError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"components.settings is missing: {error}")
        pytest.skip("components.settings not merged into this branch yet")
    return settings


def test_config_table_is_the_settings_reference_in_order() -> None:
    keys = settings_module().CONFIG_KEYS
    expected = [render_row(k.name, k.type, k.default, k.description) for k in keys]
    table = "\n".join("| " + " | ".join(row) + " |" for row in expected)

    assert readme_config_rows() == expected, f"README config table should be:\n{table}"


def test_config_table_has_one_row_per_key_with_four_cells() -> None:
    rows = readme_config_rows()
    names = [row[0] for row in rows]

    assert all(len(row) == 4 for row in rows)
    assert len(names) == len(set(names))
    assert names[:2] == ["`hostname`", "`adminEmail`"]
    required = "\N{EN DASH}"  # contract §1: the default text of a required key
    assert [row[2] for row in rows[:2]] == [required, required]


def quick_start_blocks() -> list[list[str]]:
    section = README.split("## Quick start")[1].split("\n## ")[0]
    return [
        [line.split("  #")[0].strip() for line in block.strip().splitlines()]
        for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    ]


def test_quick_start_is_pulumi_new_then_pulumi_up() -> None:
    commands = quick_start_blocks()[0]

    assert commands[0].startswith("pulumi login")
    assert re.fullmatch(r"pulumi new https://\S+ --dir lists", commands[1])
    assert commands[2] == "cd lists && pulumi up"


def test_the_deploy_sh_alternative_is_two_commands_that_deploy_sh_accepts() -> None:
    commands = quick_start_blocks()[1]

    assert len(commands) == 2
    assert commands[0] == "export HCLOUD_TOKEN=..."
    assert commands[1].startswith("./deploy.sh ")
    usage = subprocess.run(
        [str(ROOT / "deploy.sh"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in re.findall(r"(--[a-z-]+)", commands[1]):
        assert flag in usage


def test_the_test_command_is_test_sh() -> None:
    section = README.split("## Tests")[1].split("\n## ")[0]

    assert "```sh\n./test.sh\n```" in section
    assert (ROOT / "test.sh").stat().st_mode & 0o111


def test_readme_draws_the_resource_graph_and_the_deploy_sequence() -> None:
    diagrams = re.findall(r"```mermaid\n(\w+)", README)

    assert diagrams == ["flowchart", "sequenceDiagram"]


def test_readme_links_every_part_document() -> None:
    for doc in ("program", "nixos", "deploy", "reconcile", "workflows", "contracts"):
        assert f"(docs/{doc}.md)" in README
