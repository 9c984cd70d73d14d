"""Every ``key=value`` tool's ``--help`` lists each key of its schema with its default, and one example."""

from __future__ import annotations

from dataclasses import fields

import pytest

from i2sb.app import main as app
from i2sb.cli import degrade, download, evaluate, export
from i2sb.cli.keyvalue import run_tool, usage

TOOLS = [degrade.TOOL, download.TOOL, evaluate.TOOL, export.TOOL, app.TOOL]


@pytest.mark.parametrize("tool", TOOLS, ids=lambda tool: tool.prog)
def test_help_lists_every_key_its_default_and_an_example(tool, capsys):
    assert run_tool(tool, ["--help"], job=lambda options: 1) == 0
    text = capsys.readouterr().out
    assert text == usage(tool) + "\n"
    lines = text.splitlines()
    for f in fields(tool.schema):
        row = next((line for line in lines if line.startswith(f"  {f.name}=")), None)
        assert row is not None and len(row.split()) >= 2, f"{tool.prog}: no row for {f.name}="
    examples = [line for line in lines if line.startswith("example: ")]
    assert len(examples) == 1 and examples[0].startswith(f"example: {tool.prog} ")


def test_eval_example_names_its_keys():
    example = evaluate.TOOL.example.split()[1:]
    names = {f.name for f in fields(evaluate.EvalOptions)}
    assert all(word.split("=", 1)[0] in names for word in example)
