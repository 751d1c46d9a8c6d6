"""Which command lines start the fork server before the command has even loaded."""

import pytest

from replica.__main__ import starts_local_stack


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "1011"],
        ["reproduce", "1011", "--json", "out.json"],
        ["scenarios", "run", "healthy"],
        ["scenarios", "run", "--all", "--driver", "local"],
        ["scenarios", "freeze", "--driver=local"],
        ["validate", "--handler", "recommended"],
        ["up"],
    ],
)
def test_commands_that_start_a_local_stack(argv: list[str]) -> None:
    assert starts_local_stack(argv)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["reproduce", "1011", "--help"],
        ["scenarios", "run", "-h"],
        ["scenarios", "list"],
        ["status"],
        ["down"],
        ["probe"],
        ["diagnose", "--observed", "x.json"],  # a cached diagnosis starts nothing
        ["reproduce", "1011", "--driver", "compose"],
        ["reproduce", "1011", "--driver=auto"],
        ["scenarios", "run", "--driver"],
        ["report", "merge", "a.json"],
        ["run", "scenarios"],
    ],
)
def test_other_command_lines_start_nothing_early(argv: list[str]) -> None:
    assert not starts_local_stack(argv)
