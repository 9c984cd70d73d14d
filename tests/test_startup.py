"""``i2sb-train --help``, ``i2sb-sample --help`` and composing a config import no torch (nor numpy, PIL): the schemas,
Hydra's composition and the help are torch-free, the work is imported when a job runs (a fresh interpreter each,
the test process has torch already)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "numpy", "PIL", "skimage")
PROBE = """
import sys
{code}
print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))))
"""


def heavy_modules_after(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split("\n")[-2].split()


@pytest.mark.parametrize("tool", ["train", "sample"])
def test_help_imports_no_torch(tool):
    code = f"from i2sb.cli.{tool} import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0"
    assert heavy_modules_after(code) == []


def test_composing_a_config_imports_no_torch():
    code = "from i2sb.cli import compose\ncfg = compose('train', ['task=jpeg5', 'data=demo'])\nimport i2sb.config"
    assert heavy_modules_after(code) == []
