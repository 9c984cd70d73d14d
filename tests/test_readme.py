"""Every code block of README.md runs as written, in a folder of tiny fixtures (its working directory).

* ``python`` blocks run whole (or not at all: ``skip all``). String literals naming a checkpoint (``"runs/jpeg5"``, ``"results/jpeg-5"``) or an
  image (``"degraded/photo.png"``) get one made for them first.
* ``bash`` blocks run command by command (``\\`` continuations joined, comments dropped), in-process:
  - ``i2sb-train`` (also ``torchrun ... -m i2sb.train ...``) runs everything the command does before it trains:
    every job's config composed and checked, its folders and files, the run it would resume, the launcher
    (:func:`i2sb.cli.hydra_app.prepare`; training itself is tested in test_train.py / test_hydra.py);
    ``--cfg``, ``--help``, ``--info`` run for real. A Slurm launcher finds stand-ins for ``sbatch``/``srun``.
  - the other ``i2sb-*`` tools run for real and must exit 0. What their arguments read is made when missing:
    a 16x16 photo for a folder (``input=``, ``reference=``, ``data.root=``, ``i2sb-eval``'s bare folders),
    a mask of the same name for ``mask=``, for ``ckpt=``/``prior=`` a checkpoint with random weights (the
    authors' format under ``results/`` or for a released name, else a run directory of a tiny U-Net whose task
    is the folder's name when it is one), for ``i2sb-download NAME`` the authors' files already in place
    (verified, not fetched), for ``model.init=`` (and the experiments' ``data/256x256_diffusion_uncond.pt``) an
    empty file (only its existence is checked before training), for ``lpips_weights=`` AlexNet's file (random
    weights, conftest.py). Absolute paths (``/data/imagenet/train``)
    are moved into the fixture folder.
* Blocks without a language are text (the layout tree).

Commands that cannot run here are marked in README.md by an HTML comment on the line(s) right above their block
(invisible on the rendered page); REASON says what they need (a network, a GPU, Slurm itself, minutes)::

    <!-- readme-test: skip "TEXT" (REASON) -->     the block's commands that contain TEXT are not run
    <!-- readme-test: skip all (REASON) -->        no command of the block is run

A marker that skips nothing fails, and so does a command that is neither an ``i2sb-*`` tool nor marked. A tool
of an optional extra that is not installed (``i2sb-app`` without gradio) is skipped, naming the missing module.
"""

from __future__ import annotations

import ast
import re
import shlex
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from i2sb.cli.hydra_app import prepare
from i2sb.cli.train import TOOL as TRAIN
from i2sb.restoration.pretrained import PRETRAINED

sys.path.insert(0, str(Path(__file__).parent))
from helpers import authors_options, group, write_authors_dir, write_run  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r'<!--\s*readme-test:\s*skip\s+(all|"([^"]+)")\s+\(([^)]+)\)\s*-->')
INSPECT = ("--cfg", "-c", "--help", "-h", "--info", "--hydra-help")  # i2sb-train flags that run for real
FOLDER_KEYS = ("input", "reference", "restored", "data.root", "data.val_root")
CKPT_KEYS = ("ckpt", "prior")
FILE_KEYS = ("model.init",)
ADM_FILE = "data/256x256_diffusion_uncond.pt"  # the experiments' model.init
PHOTOS = ("photo.png",)  # 16x16: the tiny U-Net's size, one forward per step (the slow part on a CPU)
SIZE = 16
TASKS = {p.stem for p in (Path(__file__).resolve().parents[1] / "i2sb" / "configs" / "task").glob("*.yaml")}


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skips: list[tuple[str | None, str]] = field(default_factory=list)  # (TEXT or None for all, reason)

    def commands(self) -> list[tuple[str, list[str]]]:
        """``(source line, words)`` of each shell command: continuations joined, comments dropped."""
        joined = re.sub(r"\\\n", " ", self.text)
        return [(line.strip(), words) for line in joined.splitlines() if (words := shlex.split(line, comments=True))]

    def skipped(self, command: str) -> bool:
        return any(text is None or text in command for text, _ in self.skips)


def readme_blocks() -> list[Block]:
    lines = README.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].startswith("```"):
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            skips, above = [], index - 1
            while above >= 0 and MARKER.fullmatch(lines[above].strip()):
                match = MARKER.fullmatch(lines[above].strip())
                skips.append((None if match.group(1) == "all" else match.group(2), match.group(3)))
                above -= 1
            blocks.append(Block(index + 1, lines[index][3:].strip(), "\n".join(lines[index + 1:end]), skips))
            index = end
        index += 1
    return blocks


BLOCKS = [b for b in readme_blocks() if b.lang in ("bash", "sh", "python")]


# ---------------------------------------------------------------------------- fixtures made on demand
class Fixtures:
    """The folder a block runs in; makes what a command reads when it is not there. ``alexnet``: the LPIPS
    backbone's weights file (conftest's, random weights), fetched only when a command names one."""

    def __init__(self, root: Path, alexnet: Callable[[], Path]):
        self.root, self.alexnet = root, alexnet

    def photos(self, folder: str) -> None:
        path = self.root / folder
        if path.exists():
            return
        path.mkdir(parents=True)
        rng = np.random.default_rng(len(folder))
        for name in PHOTOS:
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path / name)

    def masks(self, folder: str) -> None:
        path = self.root / folder
        if not path.exists():
            path.mkdir(parents=True)
            for name in PHOTOS:
                mask = np.zeros((SIZE, SIZE), np.uint8)
                mask[SIZE // 4: 3 * SIZE // 4, SIZE // 4: 3 * SIZE // 4] = 255
                Image.fromarray(mask).save(path / name)

    def image(self, file: str) -> None:
        self.photos(str(Path(file).parent))
        if not (self.root / file).exists():
            Image.open(self.root / Path(file).parent / PHOTOS[0]).save(self.root / file)

    def checkpoint(self, where: str) -> None:
        path = self.root / where
        if path.exists():
            return
        name = path.name
        if name in PRETRAINED or path.parent.name == "results":
            task = PRETRAINED[name].task if name in PRETRAINED else "jpeg5"
            bridge = {"beta_max": 1.0, "ot_ode": True} if task.startswith(("blur", "inpaint")) else \
                {"beta_max": 0.3, "ot_ode": False}
            write_authors_dir(path, authors_options(name, **bridge))
        else:
            path.mkdir(parents=True)
            write_run(path, task=group("task", name if name in TASKS else "jpeg5"))

    def placeholder(self, file: str) -> None:
        (self.root / file).parent.mkdir(parents=True, exist_ok=True)
        (self.root / file).touch()

    def arguments(self, prog: str, args: list[str]) -> list[str]:
        """``args`` with absolute paths moved into the fixture folder, after making what they read."""
        out = []
        for arg in args:
            key, sep, value = arg.partition("=")
            if sep and value.startswith("/"):
                value = str(self.root) + value
                arg = f"{key}={value}"
            if sep and key in FOLDER_KEYS:
                self.photos(value)
            elif sep and key == "mask":
                self.masks(value)
            elif sep and key in CKPT_KEYS:
                self.checkpoint(value)
            elif sep and key in FILE_KEYS:
                self.placeholder(value)
            elif sep and key == "lpips_weights" and not (self.root / value).exists():
                shutil.copyfile(self.alexnet(), self.root / value)
            elif not sep and not arg.startswith("-") and prog == "i2sb-eval":
                self.photos(arg)
            out.append(arg)
        if prog == "i2sb-download" and args and not args[0].startswith(("list", "adm")) and "=" not in args[0]:
            folder = next((a.split("=", 1)[1] for a in args if a.startswith("dir=")), "results")
            self.checkpoint(f"{folder}/{args[0]}")
        return out

    def python(self, code: str) -> None:
        for literal in (n.value for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Constant)):
            if isinstance(literal, str) and re.fullmatch(r"(runs|results|models)/[\w.-]+/?", literal):
                self.checkpoint(literal)
            elif isinstance(literal, str) and re.fullmatch(r"[\w./-]+\.(png|jpg|jpeg)", literal):
                self.image(literal)


# ---------------------------------------------------------------------------- running commands
ROOT = Path(__file__).resolve().parents[1]
TOOLS = {name: EntryPoint(name, target, "console_scripts")  # pyproject's, whatever this environment installed
         for name, target in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"].items()}


def i2sb_args(words: list[str]) -> tuple[str, list[str]] | None:
    """``(tool, arguments)`` of an i2sb command (``torchrun ... -m i2sb.train ARGS`` is ``i2sb-train ARGS``)."""
    if words[0] in TOOLS:
        return words[0], words[1:]
    if words[0] == "torchrun" and "i2sb.train" in words:
        return "i2sb-train", words[words.index("i2sb.train") + 1:]
    return None


def run_tool(prog: str, args: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", [prog, *args])
    try:
        status = TOOLS[prog].load()()
    except SystemExit as exit_:
        status = exit_.code
    except ModuleNotFoundError as err:  # a tool of an optional extra that this environment does not have
        pytest.skip(f"{prog} needs {err.name} (an optional extra, not installed here)")
    return 0 if status is None else status


def slurm_stand_ins(root: Path, monkeypatch) -> None:
    """``sbatch``/``srun`` on the PATH, so that a Slurm launcher passes its check (nothing is submitted)."""
    bin_dir = root / ".bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("sbatch", "srun"):
        (bin_dir / name).write_text("#!/bin/sh\necho 'not a Slurm machine' >&2; exit 1\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")


def run_command(prog: str, args: list[str], where: str, monkeypatch, capsys) -> None:
    if prog == "i2sb-train" and not any(a in INSPECT for a in args):
        if any(a.startswith("hydra/launcher=") and "slurm" in a for a in args):
            pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
        prepare(TRAIN, args)  # everything before training; a UsageError names what is wrong
        return
    status = run_tool(prog, args, monkeypatch)
    captured = capsys.readouterr()
    assert status == 0, f"{where}: exit status {status}\n{captured.err[-2000:]}"


@pytest.fixture
def one_thread():
    """Tiny networks: one thread is as fast, and far faster on a shared, loaded machine (no OpenMP waits)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_code_block_runs_as_written(block, tmp_path, monkeypatch, capsys, request, one_thread):
    monkeypatch.chdir(tmp_path)
    fixtures = Fixtures(tmp_path, lambda: request.getfixturevalue("alexnet_file"))
    if block.lang == "python":
        assert all(text is None for text, _ in block.skips), f"README.md:{block.line}: python blocks: skip all"
        if block.skips:
            pytest.skip(f"README.md:{block.line}: needs {block.skips[0][1]}")
        fixtures.python(block.text)
        exec(compile(block.text, f"README.md:{block.line}", "exec"), {"__name__": "readme"})
        return
    slurm_stand_ins(tmp_path, monkeypatch)
    fixtures.placeholder(ADM_FILE)
    used = set()
    for source, words in block.commands():
        if block.skipped(source):
            used.update(text for text, _ in block.skips if text is None or text in source)
            continue
        found = i2sb_args(words)
        assert found is not None, (f"README.md:{block.line}: `{source}` is not an i2sb command; mark what it "
                                   f"needs above the block (see tests/test_readme.py)")
        prog, args = found
        run_command(prog, fixtures.arguments(prog, args), f"README.md:{block.line}: `{source}`", monkeypatch, capsys)
    unused = [text for text, _ in block.skips if text not in used]
    assert not unused, f"README.md:{block.line}: the marker skip {unused[0] or 'all'} skips nothing"


def test_markers_are_above_code_blocks_and_give_a_reason():
    lines = README.read_text().splitlines()
    marked = {index for index, line in enumerate(lines) if "readme-test" in line}
    for index in marked:
        assert MARKER.fullmatch(lines[index].strip()), f"README.md:{index + 1}: not a readme-test marker"
        below = next(i for i in range(index + 1, len(lines)) if i not in marked)
        assert lines[below].startswith("```"), f"README.md:{index + 1}: a marker must stand right above a block"
