"""Shared test settings: a small thread count and deterministic seeds for a 2-core CI machine."""

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def alexnet_file(tmp_path_factory):
    """A torchvision AlexNet state_dict with random weights under torchvision's file name (the LPIPS backbone;
    its convolutional ``features.*`` only -- what LPIPS uses -- 10 MB instead of the classifier's 240 MB)."""
    from torchvision.models import alexnet  # slow import (all of torchvision.models); only the LPIPS tests need it

    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("lpips") / "alexnet-owt-7be5be79.pth"
    torch.save({k: v for k, v in alexnet().state_dict().items() if k.startswith("features.")}, path)
    return path


APP_TASKS = {"jpeg5": {"degradation": "jpeg5", "ot_ode": False}, "sr4x_pool": {"degradation": "sr4x_pool"},
             "inpaint_center": {"degradation": "inpaint_center", "ot_ode": True, "beta_max": 1.0}}


@pytest.fixture(scope="session")
def app_site(tmp_path_factory):
    """``(root, server)``: three tiny runs (``root/runs/NAME``), photos (``root/photos/NAME/``, an EXIF-rotated phone
    JPEG among jpeg5's), a mask (``root/masks/photo.png``) and ``i2sb-app`` serving the runs with max_pixels 48x48
    (tests/test_app.py, tests/test_app_browser.py)."""
    import numpy as np  # the app tests' own imports: the rest of the suite runs without gradio
    from PIL import Image

    from app_server import AppServer
    from helpers import random_image, write_run

    pytest.importorskip("gradio")
    root = tmp_path_factory.mktemp("app")
    runs = [write_run(root / "runs" / name, task=task) for name, task in APP_TASKS.items()]
    for name, (h, w) in {"jpeg5": (20, 28), "sr4x_pool": (8, 12), "inpaint_center": (16, 24)}.items():
        (root / "photos" / name).mkdir(parents=True)
        random_image(h, w, seed=len(name)).save(root / "photos" / name / "photo.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    random_image(12, 20, seed=3).save(root / "photos" / "jpeg5" / "phone.jpg", quality=90, exif=exif.tobytes())
    (root / "masks").mkdir()
    holes = np.zeros((16, 24), np.uint8)
    holes[4:12, 6:18] = 255
    Image.fromarray(holes).save(root / "masks" / "photo.png")
    with AppServer(runs, f"max_pixels={48 * 48}") as server:
        yield root, server
