"""scripts/authors_code: the package that drives a clone of NVlabs/I2SB, imported against a stub of their layout
(a tmp folder with the module names it expects; their real code is never needed here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"

# Their files, reduced to what the loader looks at: imports of optional modules the driven paths never use
# (stubbed while loading when not installed) and a name per module to recognise it by.
AUTHORS_LAYOUT = {
    "i2sb/runner.py": "import ipdb\nimport wandb\nfrom torch_ema import ExponentialMovingAverage\nNAME = 'runner'\n",
    "i2sb/diffusion.py": "NAME = 'diffusion'\n",
    "i2sb/network.py": "from guided_diffusion.script_util import create_model\nNAME = 'network'\n",
    "i2sb/util.py": "from prefetch_generator import BackgroundGenerator\nNAME = 'util'\n",
    "guided_diffusion/__init__.py": "",
    "guided_diffusion/script_util.py": "def create_model(**kwargs):\n    return kwargs\n",
    "guided_diffusion/unet.py": "NAME = 'unet'\n",
    "corruption/__init__.py": "NAME = 'corruption'\n",
    "corruption/jpeg.py": "",
    "corruption/superresolution.py": "",
    "corruption/blur.py": "",
    "corruption/inpaint.py": "",
}
PROBE = """
import json, sys
sys.path.insert(0, {scripts!r})
import authors_code
assert "authors_i2sb" not in sys.modules  # importing the package loads nothing of theirs
code = authors_code.load_authors({clone!r})
print(json.dumps({{"names": [code.runner.NAME, code.network.NAME, code.util.NAME, code.unet.NAME, code.corruption.NAME],
                  "files": [m.__file__ for m in (code.runner, code.script_util, code.corruption)],
                  "stubbed": sorted(code.stubbed), "left": [n for n in ("ipdb", "wandb") if n in sys.modules],
                  "ours": sys.modules["i2sb"].__file__, "again": authors_code.load_authors({clone!r}) is code}}))
"""


def write_layout(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def probe(tmp_path: Path, clone: Path) -> subprocess.CompletedProcess:
    site = write_layout(tmp_path / "site", {"torch_ema.py": "class ExponentialMovingAverage:\n    pass\n"})
    env = {"PYTHONPATH": f"{ROOT}:{site}", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", PROBE.format(scripts=str(SCRIPTS), clone=str(clone))],
                          capture_output=True, text=True, env=env, timeout=120)


def test_their_modules_load_from_the_clone_under_their_own_names(tmp_path):
    clone = write_layout(tmp_path / "I2SB", AUTHORS_LAYOUT)
    run = probe(tmp_path, clone)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["names"] == ["runner", "network", "util", "unet", "corruption"]
    assert all(file.startswith(str(clone.resolve())) for file in out["files"])
    assert out["ours"].startswith(str(ROOT / "i2sb"))  # their i2sb/ never shadows ours
    assert {"ipdb", "wandb", "prefetch_generator"} <= set(out["stubbed"]) and out["left"] == []  # stubs removed
    assert out["again"]


def test_a_folder_that_is_not_their_clone_is_named_with_what_it_lacks(tmp_path):
    clone = write_layout(tmp_path / "I2SB", {k: v for k, v in AUTHORS_LAYOUT.items() if k != "i2sb/network.py"})
    run = probe(tmp_path, clone)
    assert run.returncode == 1 and "AuthorsCodeError" in run.stderr
    assert f"{clone.resolve()}: not a clone of NVlabs/I2SB (missing i2sb/network.py)" in run.stderr


def test_their_options_for_our_tasks_follow_our_task_configs():
    sys.path.insert(0, str(SCRIPTS))
    try:
        import authors_code
    finally:
        sys.path.remove(str(SCRIPTS))
    assert "inpaint_freeform1020" not in authors_code.TASKS  # their freeform masks need a download
    for task, (corrupt, beta_max, ot_ode) in authors_code.TASKS.items():
        config = yaml.safe_load((ROOT / "configs" / "task" / f"{task}.yaml").read_text())
        opt = authors_code.options(task, image_size=32, batch_size=4)
        assert (opt.corrupt, opt.beta_max, opt.ot_ode) == (corrupt, config["beta_max"], config["ot_ode"])
    assert authors_code.options("sr4x_pool", 32, 4, beta_max=0.5).beta_max == 0.5
    with pytest.raises(ValueError, match="no counterpart in the authors' code"):
        authors_code.options("colorize", 32, 4)
