"""The page of ``i2sb-app`` (Gradio): choose a model, upload photos, restore, compare, download.

The Restore button runs :func:`restore_event`, a named API endpoint (``/restore``) that ``gradio_client`` calls
with ``(model, photos, mask, nfe, sampler, seed, samples)``; before it, a private step turns strokes drawn on the
photo into the mask file. Every failure reaches the page as one line (``gr.Error``), never a traceback.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.samplers import SAMPLERS
from ..utils.images import load_image, save_image
from .models import ServedModel, task_label
from .restore import MAX_SAMPLES, mask_from_layers, restore_photos

try:
    import gradio as gr
except ImportError:  # the optional `app` extra: i2sb-app says how to install it
    gr = None

KEPT_REQUESTS = 8  # request folders kept on disk (Gradio copies the files it serves into its own cache)
FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: the page loads nothing from the internet
CSS = "#status p { margin: 0.1em 0; }"


@dataclass
class Settings:
    """What the server was started with (``i2sb-app``'s keys)."""

    models: dict[str, ServedModel]
    max_pixels: int
    work_dir: Path
    log: Callable[[str], None] = print
    _folders: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request_folder(self) -> Path:
        """A fresh folder for one request's files; the oldest beyond :data:`KEPT_REQUESTS` are removed."""
        with self._lock:
            folder = Path(tempfile.mkdtemp(prefix="request-", dir=self.work_dir))
            self._folders.append(folder)
            while len(self._folders) > KEPT_REQUESTS:
                shutil.rmtree(self._folders.popleft(), ignore_errors=True)
        return folder


def _model(settings: Settings, name: object) -> ServedModel:
    if not isinstance(name, str) or name not in settings.models:
        raise gr.Error(f"model: choose one of {', '.join(settings.models)}, got {name!r}")
    return settings.models[name]


def _paths(files: Any) -> list[Path]:
    """Uploaded files (Gradio gives paths; gradio_client's ``handle_file`` dicts carry one under ``path``)."""
    files = [] if files is None else files if isinstance(files, list) else [files]
    return [Path(f["path"] if isinstance(f, dict) else f) for f in files]


def restore_event(settings: Settings, model: str, photos: Any, mask: Any, nfe: Any, sampler: Any, seed: Any,
                  samples: Any, progress: Any) -> tuple[list, Any, list[str], str, list]:
    """``/restore``: -> (gallery, before/after pair, the PNGs to download, report lines, the pairs)."""
    served = _model(settings, model)
    masks = _paths(mask)
    folder = settings.request_folder()
    try:
        result = restore_photos(served, _paths(photos), folder, mask=masks[0] if masks else None, nfe=nfe,
                                sampler=sampler, seed=seed, n_samples=samples, max_pixels=settings.max_pixels,
                                progress=lambda done, what: progress(done, desc=what))
    except ValueError as err:
        raise gr.Error(" ".join(str(err).split()), print_exception=False) from None
    settings.log(f"i2sb-app: {served.name} nfe={nfe} sampler={sampler} seed={seed} samples={samples}: "
                 + "; ".join(result.lines))
    if not result.outputs:
        raise gr.Error(" | ".join(result.lines), print_exception=False)
    gallery = [(str(out), out.name) for out in result.outputs]
    pairs = [(str(before), str(after)) for before, after in result.pairs]
    return gallery, pairs[0], [str(out) for out in result.outputs], "\n\n".join(result.lines), pairs


def drawn_mask(settings: Settings, editor: Any, uploaded: Any) -> Any:
    """The strokes drawn on the photo as a mask file (what ``/restore`` takes); the uploaded mask otherwise."""
    layers = (editor or {}).get("layers") or []
    path = mask_from_layers(layers, settings.request_folder() / "mask.png")
    return str(path) if path is not None else uploaded


def task_line(served: ServedModel) -> str:
    """What the model does and what it expects, one line."""
    hint = (" Upload the low-resolution photo: it comes back 4x larger." if served.scale > 1 else
            " Draw the holes on the photo (or upload a mask, white = hole)." if served.needs_mask else "")
    return f"Restores **{task_label(served.restorer)}**; NFE 1..{served.max_nfe} (default {served.restorer.default_nfe}).{hint}"


def model_controls(settings: Settings, name: str) -> tuple:
    """The controls that depend on the model: task line, NFE slider, sampler choice, mask inputs."""
    served = _model(settings, name)
    return (task_line(served),
            gr.Slider(minimum=1, maximum=served.max_nfe, value=served.restorer.default_nfe, step=1),
            gr.Dropdown(choices=list(served.samplers), value=served.samplers[0], visible=len(served.samplers) > 1),
            gr.ImageEditor(visible=served.needs_mask), gr.File(visible=served.needs_mask, value=None))


def photo_to_edit(settings: Settings, name: str, photos: Any) -> Any:
    """The first photo, upright, as the background to draw holes on (inpainting models only)."""
    paths = _paths(photos)
    if not paths or not settings.models[name].needs_mask:
        return None
    try:
        upright = save_image(load_image(paths[0], settings.max_pixels), settings.request_folder() / "photo.png")
    except (ValueError, OSError) as err:
        raise gr.Error(" ".join(str(err).replace(str(paths[0]), paths[0].name).split()), print_exception=False) from None
    return {"background": str(upright), "layers": [], "composite": None}


def compare(pairs: list, event: gr.SelectData) -> Any:
    """The gallery item clicked -> its (before, after) in the comparison slider."""
    return pairs[event.index] if pairs and 0 <= event.index < len(pairs) else None


def build_page(settings: Settings) -> Any:
    """The ``gr.Blocks`` page; its queue runs one restoration at a time."""
    first = next(iter(settings.models.values()))
    choices = [(m.label, m.name) for m in settings.models.values()]
    with gr.Blocks(title="i2sb: restore photos", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown("## Restore photos with I²SB\nUpload photos, choose the number of network evaluations (NFE), "
                    "press **Restore**; download the full-resolution PNGs (the bits `i2sb-sample` writes).")
        pairs = gr.State([])
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown(choices=choices, value=first.name, label="Model", elem_id="model")
                task = gr.Markdown(task_line(first))
                photos = gr.File(file_count="multiple", file_types=["image"], label="Photos", elem_id="photos")
                editor = gr.ImageEditor(label="Draw the holes", type="numpy", image_mode="RGBA", sources=("upload",),
                                        transforms=(), layers=False, visible=first.needs_mask,
                                        brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"))
                mask = gr.File(file_types=["image"], label="Mask (white = hole)", visible=first.needs_mask, elem_id="mask")
                top = max(m.max_nfe for m in settings.models.values())  # the server checks each model's own
                nfe = gr.Slider(1, top, value=first.restorer.default_nfe, step=1, label="NFE", elem_id="nfe")
                every = [s for s in SAMPLERS if any(s in m.samplers for m in settings.models.values())]
                sampler = gr.Dropdown(choices=every, value=first.samplers[0], label="Sampler",  # narrowed per model
                                      visible=len(first.samplers) > 1)
                with gr.Row():
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                    samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples per photo")
                button = gr.Button("Restore", variant="primary", elem_id="restore")
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after", type="filepath", elem_id="compare")
                gallery = gr.Gallery(label="Restorations (click one to compare it)", columns=6, height=220,
                                     object_fit="contain", elem_id="gallery")
                files = gr.File(label="Download (PNG, full resolution)", file_count="multiple", elem_id="downloads")
                status = gr.Markdown(elem_id="status")
        model.change(lambda name: model_controls(settings, name), model, [task, nfe, sampler, editor, mask],
                     api_visibility="private")
        photos.change(lambda name, p: photo_to_edit(settings, name, p), [model, photos], editor,
                      api_visibility="private")
        gallery.select(compare, pairs, slider, api_visibility="private")

        def restore(model, photos, mask, nfe, sampler, seed, samples, progress=gr.Progress()):
            return restore_event(settings, model, photos, mask, nfe, sampler, seed, samples, progress)

        button.click(lambda e, m: drawn_mask(settings, e, m), [editor, mask], mask, api_visibility="private").success(
            restore, [model, photos, mask, nfe, sampler, seed, samples], [gallery, slider, files, status, pairs],
            api_name="restore", concurrency_limit=1, concurrency_id="model")
    return page


def theme() -> Any:
    """Gradio's default look with local fonts (its default downloads fonts from the internet)."""
    return gr.themes.Default(font=FONTS, font_mono=["ui-monospace", "monospace"])
