"""The key=value tools start light (``--help`` loads no torch: it imports their schema only), end quietly when
their reader goes away (``i2sb-download list | head``), and ``i2sb.load`` is where ``dir``/``help`` look."""

from __future__ import annotations

import pydoc
import subprocess
import sys

import pytest

import i2sb
from i2sb import degrade
from i2sb.cli import degrade as cli
from i2sb.degrade.degrade_folder import FORMATS

NO_TORCH = """
import sys
from {module} import {main}
try:
    {main}(["--help"])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "torchvision") if m in sys.modules)
print("heavy:", heavy)
"""


@pytest.mark.parametrize("module,main", [("i2sb.cli.evaluate", "run_eval"), ("i2sb.cli.download", "download_main"),
                                         ("i2sb.cli.export", "export_main"), ("i2sb.cli.degrade", "main")])
def test_help_imports_no_torch(module, main):
    proc = subprocess.run([sys.executable, "-c", NO_TORCH.format(module=module, main=main)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "usage: " in proc.stdout and "heavy: []" in proc.stdout, proc.stdout[-300:]


def test_degrades_names_are_the_registrys():
    assert cli.TASKS == tuple(degrade.TASKS) and cli.FORMATS == tuple(FORMATS)


def test_a_closed_pipe_ends_the_tool_quietly(tmp_path):
    """``i2sb-download list | true``: the reader is gone before the table is written."""
    code = "import sys; from i2sb.cli.download import main; sys.argv[1:] = ['list', 'dir=%s']; main()" % tmp_path
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # as `head` that has read enough, or `true`
    _, err = proc.communicate(timeout=300)
    assert err.decode() == "" and proc.returncode == 141


def test_load_is_listed_by_dir_and_help():
    assert "load" in dir(i2sb) and "load" in i2sb.__all__
    text = pydoc.render_doc(i2sb, renderer=pydoc.plaintext)
    assert "load(ckpt" in text and "i2sb.load(" in i2sb.__doc__
