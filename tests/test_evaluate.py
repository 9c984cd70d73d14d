"""evaluate_folders and the i2sb-eval program on tiny folders written by the tests."""

import json
import re
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from i2sb.cli import run_eval as main
from i2sb.evaluation import evaluate_folders as evaluate
from i2sb.evaluation import metrics, perceptual, report, swd
from i2sb.evaluation.evaluate_folders import EvaluationWarning, evaluate_folders

H, W = 24, 32
NAMES = ["a", "b", "sub/c", "sub/d", "e", "f"]  # reference "b" is a .bmp, the rest .png
BRIGHT = {"a", "sub/c", "e"}  # mean brightness decides the injected classifier's class


def _image(rng: np.random.Generator, bright: bool) -> np.ndarray:
    low = rng.uniform(0, 1, size=(H // 4, W // 4, 3))
    smooth = np.kron(low, np.ones((4, 4, 1)))
    return (smooth * 90 + (150 if bright else 10)).astype(np.uint8)


def _save(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def folders(tmp_path):
    """reference/ and restored/ with six pairs; restored 'sub/c' is an exact copy (PSNR = inf)."""
    rng = np.random.default_rng(0)
    for name in NAMES:
        clean = _image(rng, name in BRIGHT)
        noisy = np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).astype(np.uint8)
        _save(tmp_path / "reference" / f"{name}{'.bmp' if name == 'b' else '.png'}", clean)
        _save(tmp_path / "restored" / f"{name}.png", clean if name == "sub/c" else noisy)
    return tmp_path / "restored", tmp_path / "reference"


class TinyFeatures(torch.nn.Module):
    """A small random CNN standing in for Inception: (B, 3, H, W) in [0, 255] -> (B, 3), noise-sensitive."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, 3, 3)
        self.calls = 0

    def forward(self, x):
        assert x.min() >= 0 and x.max() <= 255 and x.max() > 1
        self.calls += 1
        y = self.conv(x / 255)
        return (y - y.mean(dim=(2, 3), keepdim=True)).square().mean(dim=(2, 3)) * 3000  # local contrast


def brightness_classifier(x: torch.Tensor) -> torch.Tensor:
    """Class 1 for bright images; checks the [-1, 1] input convention."""
    assert x.min() >= -1 and x.max() <= 1
    m = x.mean(dim=(1, 2, 3))
    return torch.stack([-m, m], dim=1)


def _batch(folder) -> torch.Tensor:
    """All images under ``folder`` in key order as (N, 3, H, W) floats in [0, 255]."""
    arrays = [np.array(Image.open(p).convert("RGB")) for p in evaluate.list_images(folder).values()]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


def _metrics_written(restored) -> bool:
    """Whether a metrics file landed in the restored folder or at its default place beside it."""
    return (restored / "metrics.json").exists() or (restored.parent / f"{restored.name}_metrics.json").exists()


def _no_weights(monkeypatch, tmp_path):
    for source in (metrics.INCEPTION_WEIGHTS, metrics.RESNET50_WEIGHTS, *perceptual.BACKBONE_WEIGHTS.values()):
        monkeypatch.delenv(source.env_var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))


# ------------------------------------------------------------------------------ evaluate_folders


def test_per_image_psnr_and_ssim_match_the_metrics_on_the_files(folders):
    restored, reference = folders
    result = evaluate_folders(restored, reference, fid=False)
    rows = {r["name"]: r for r in result["per_image"]}
    assert sorted(rows) == sorted(NAMES) and result["num_pairs"] == 6
    for name in NAMES:
        x = np.asarray(Image.open(restored / f"{name}.png").convert("RGB"))
        y = np.asarray(Image.open(next(reference.glob(f"{name}.*"))).convert("RGB"))
        mse = np.mean((x.astype(np.float64) - y) ** 2)
        expected_psnr = 10 * np.log10(255.0**2 / mse) if mse > 0 else np.inf
        expected_ssim = structural_similarity(
            x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
        )
        assert rows[name]["psnr"] == pytest.approx(expected_psnr, rel=1e-10)
        assert rows[name]["ssim"] == pytest.approx(expected_ssim, abs=1e-10)
    assert rows["sub/c"]["psnr"] == np.inf and rows["sub/c"]["ssim"] == pytest.approx(1.0)
    assert result["psnr"] == np.inf  # an exact copy makes the mean infinite
    finite = [rows[n]["psnr"] for n in NAMES if n != "sub/c"]
    assert evaluate_folders(restored, reference, fid=False)["ssim"] == pytest.approx(
        np.mean([r["ssim"] for r in rows.values()])
    )
    (restored / "sub" / "c.png").unlink()
    assert evaluate_folders(restored, reference, fid=False)["psnr"] == pytest.approx(np.mean(finite))


def test_fid_with_an_injected_extractor(folders, tmp_path):
    restored, reference = folders
    extractor = TinyFeatures()
    result = evaluate_folders(restored, reference, feature_extractor=extractor, batch_size=4)

    def feats(folder):
        return extractor(_batch(folder)).detach()

    expected = metrics.fid_from_features(feats(restored), feats(reference))
    assert result["fid"] == pytest.approx(expected, rel=1e-6) and result["fid"] > 0.1
    assert result["fid_reference"] == str(reference)

    mu, sigma = metrics.feature_stats(feats(reference))
    np.savez(tmp_path / "ref.npz", mu=mu, sigma=sigma)
    from_npz = evaluate_folders(restored, fid_ref=tmp_path / "ref.npz", feature_extractor=extractor)
    assert from_npz["fid"] == pytest.approx(expected, rel=1e-6)
    assert from_npz["psnr"] is None and from_npz["num_pairs"] == 0
    assert evaluate_folders(restored, fid_ref=reference, feature_extractor=extractor)["fid"] == pytest.approx(
        expected, rel=1e-6
    )
    assert abs(evaluate_folders(restored, fid_ref=restored, feature_extractor=extractor)["fid"]) < 1e-6


def test_fid_reference_of_another_dimension_is_an_error(folders, tmp_path):
    restored, _ = folders
    np.savez(tmp_path / "ref2048.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ValueError, match="ref2048.npz has 2048-d statistics but the features are 3-d"):
        evaluate_folders(restored, fid_ref=tmp_path / "ref2048.npz", feature_extractor=TinyFeatures())


def test_fid_off_or_without_weights_keeps_psnr(folders, tmp_path, monkeypatch):
    restored, reference = folders
    extractor = TinyFeatures()
    assert evaluate_folders(restored, reference, feature_extractor=extractor, fid=False)["fid"] is None
    assert extractor.calls == 0
    _no_weights(monkeypatch, tmp_path)
    result = evaluate_folders(restored, reference)
    assert result["fid"] is None and result["psnr"] == np.inf and result["num_pairs"] == 6
    assert any(metrics.INCEPTION_WEIGHTS.url in n and n.startswith("FID skipped") for n in result["notes"])


def test_accuracy_with_an_injected_classifier(folders, tmp_path):
    restored, _ = folders
    wrong = "e"  # labelled dark although bright -> 5 of 6 correct
    lines = ["file,label"] + [f"{n}.JPEG,{int(n in BRIGHT) ^ (n == wrong)}" for n in NAMES]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    result = evaluate_folders(restored, labels=tmp_path / "labels.csv", classifier=brightness_classifier)
    assert result["accuracy"] == pytest.approx(5 / 6) and result["num_labeled"] == 6
    rows = {r["name"]: r for r in result["per_image"]}
    assert rows[wrong]["correct"] is False and rows[wrong]["pred"] == 1 and rows[wrong]["label"] == 0
    assert all(rows[n]["correct"] for n in NAMES if n != wrong)


def test_accuracy_skipped_with_a_note_without_resnet_weights(folders, tmp_path, monkeypatch):
    restored, _ = folders
    _no_weights(monkeypatch, tmp_path)
    (tmp_path / "labels.txt").write_text("a 1\n")
    result = evaluate_folders(restored, labels=tmp_path / "labels.txt")
    assert result["accuracy"] is None
    assert any(n.startswith("accuracy skipped") and metrics.RESNET50_WEIGHTS.url in n for n in result["notes"])


def test_read_labels_formats(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text(
        "# authors' style: absolute paths with extensions\n"
        "/data/val/n01/ILSVRC2012_val_00000001.JPEG 7\n"
        "sub/c.png\t3\n"
        "x/dup.png,1\ny/dup.png,2\n"
    )
    labels = evaluate.read_labels(path)
    assert labels["sub/c"] == 3 and labels["/data/val/n01/ILSVRC2012_val_00000001"] == 7
    lookup = evaluate.label_lookup(labels)
    assert lookup("ILSVRC2012_val_00000001") == 7  # by file name
    assert lookup("n01/ILSVRC2012_val_00000001") == 7
    assert lookup("sub/c") == 3 and lookup("other/c") == 3
    assert lookup("x/dup") == 1 and lookup("dup") is None  # ambiguous file name
    assert lookup("missing") is None
    path.write_text("a,1\nb,2\nc\n")
    with pytest.raises(ValueError, match=r"labels.txt:3: expected 'NAME,CLASS_INDEX'"):
        evaluate.read_labels(path)
    path.write_text("a,1\na.png,2\n")
    with pytest.raises(ValueError, match="two labels"):
        evaluate.read_labels(path)


def test_unreadable_images_are_skipped_with_a_warning(folders):
    restored, reference = folders
    (restored / "broken.png").write_bytes(b"not a png")
    (reference / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.warns(EvaluationWarning, match=r"unreadable image .*broken\.png"):
        result = evaluate_folders(restored, reference, fid=False)
    assert result["num_unreadable"] == 1 and result["unreadable"] == [str(restored / "broken.png")]
    assert result["num_images"] == 6 and result["num_pairs"] == 6


def test_unreadable_reference_keeps_the_restored_image_for_fid(folders):
    restored, reference = folders
    (reference / "a.png").write_bytes(b"broken")
    (reference / "zz.png").write_bytes(b"broken too")  # read only by the FID pass
    with pytest.warns(EvaluationWarning) as record:
        result = evaluate_folders(restored, reference, feature_extractor=TinyFeatures())
    assert result["unreadable"] == [str(reference / "a.png"), str(reference / "zz.png")]
    assert sum("unreadable" in str(w.message) for w in record) == 2  # each file tried once
    rows = {r["name"]: r for r in result["per_image"]}
    assert result["num_images"] == 6 and result["num_pairs"] == 5 and "psnr" not in rows["a"]
    assert result["fid"] is not None


def test_a_pair_of_different_sizes_is_reported_and_the_rest_scored(folders):
    restored, reference = folders
    _save(restored / "a.png", np.zeros((H, W + 2, 3), np.uint8))
    with pytest.warns(EvaluationWarning, match=r"restored image .*a\.png is 34x24 but reference .*a\.png is 32x24"):
        result = evaluate_folders(restored, reference, fid=False)
    assert result["num_size_mismatch"] == 1 and result["size_mismatch"] == [str(restored / "a.png")]
    assert result["num_pairs"] == 5 and "psnr" not in {r["name"]: r for r in result["per_image"]}["a"]


def test_references_without_a_restoration_are_reported(folders):
    restored, reference = folders
    (restored / "f.png").unlink()
    with pytest.warns(EvaluationWarning, match=r"1 reference image\(s\) without a restoration, e\.g\. 'f'"):
        result = evaluate_folders(restored, reference, fid=False)
    assert result["num_unmatched_references"] == 1 and result["unmatched_references"] == ["f"]
    assert "1 references without a restoration" in report.format_table(result)


def test_folder_errors(folders, tmp_path):
    restored, reference = folders
    with pytest.raises(FileNotFoundError, match="nowhere"):
        evaluate_folders(tmp_path / "nowhere", reference)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        evaluate_folders(tmp_path / "empty", reference)
    _save(tmp_path / "other" / "zzz.png", np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="no restored image has a counterpart"):
        evaluate_folders(tmp_path / "other", reference)
    _save(restored / "a.jpg", np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="two images share the name 'a'"):
        evaluate_folders(restored, reference)
    with pytest.raises(ValueError, match="nothing to compute"):
        evaluate_folders(reference)


def test_unpaired_restored_images_count_for_fid_but_not_psnr(folders):
    restored, reference = folders
    _save(restored / "extra.png", np.zeros((H, W, 3), np.uint8))
    with pytest.warns(EvaluationWarning, match="1 restored image"):
        result = evaluate_folders(restored, reference, feature_extractor=TinyFeatures())
    assert result["num_images"] == 7 and result["num_pairs"] == 6 and result["num_unpaired"] == 1
    assert "psnr" not in {r["name"]: r for r in result["per_image"]}["extra"]


# ------------------------------------------------------------------- samples NAME_sK and hidden files


def _psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = np.mean((x.astype(np.float64) - y) ** 2)
    return 10 * np.log10(255.0**2 / mse)


@pytest.fixture
def sampled(tmp_path):
    """reference/{a,b,sub/c}.png; restored a_s0..a_s2, b_s0, b_s1, sub/c_s0 (noise grows with K) and x_s0
    (no reference x); returns (restored, reference, {restored key: (reference key, sample, PSNR)})."""
    rng = np.random.default_rng(3)
    expected = {}
    for name, n in [("a", 3), ("b", 2), ("sub/c", 1)]:
        clean = _image(rng, name == "a")
        _save(tmp_path / "reference" / f"{name}.png", clean)
        for k in range(n):
            noisy = np.clip(clean + rng.normal(0, 4 + 4 * k, clean.shape), 0, 255).astype(np.uint8)
            _save(tmp_path / "restored" / f"{name}_s{k}.png", noisy)
            expected[f"{name}_s{k}"] = (name, k, _psnr(noisy, clean))
    _save(tmp_path / "restored" / "x_s0.png", _image(rng, False))
    return tmp_path / "restored", tmp_path / "reference", expected


def test_samples_pair_with_their_reference_and_are_averaged_per_sample_and_per_image(sampled):
    restored, reference, expected = sampled
    with pytest.warns(EvaluationWarning, match="1 restored image.*'x_s0'"):
        result = evaluate_folders(restored, reference, fid=False, lpips=False)
    rows = {r["name"]: r for r in result["per_image"]}
    assert sorted(rows) == sorted([*expected, "x_s0"]) and "reference" not in rows["x_s0"]
    for key, (ref, k, psnr) in expected.items():
        assert (rows[key]["reference"], rows[key]["sample"]) == (ref, k)
        assert rows[key]["psnr"] == pytest.approx(psnr, rel=1e-10)
    psnr = {key: p for key, (_, _, p) in expected.items()}
    assert result["num_pairs"] == 6 and result["num_unpaired"] == 1 and result["num_images"] == 7
    assert result["num_reference_images"] == 3 and result["samples_per_image"] == {"min": 1, "max": 3}
    assert result["sample_indices"] == [0, 1, 2]
    assert result["psnr"] == pytest.approx(np.mean(list(psnr.values())))
    assert result["psnr_per_sample"] == pytest.approx({
        "0": np.mean([psnr["a_s0"], psnr["b_s0"], psnr["sub/c_s0"]]),
        "1": np.mean([psnr["a_s1"], psnr["b_s1"]]),
        "2": psnr["a_s2"],
    })
    image_means = [np.mean([psnr["a_s0"], psnr["a_s1"], psnr["a_s2"]]), np.mean([psnr["b_s0"], psnr["b_s1"]]),
                   psnr["sub/c_s0"]]  # fmt: skip
    assert result["psnr_image_mean"] == pytest.approx(np.mean(image_means))
    ssim = [rows[key]["ssim"] for key in expected]
    assert result["ssim"] == pytest.approx(np.mean(ssim)) and set(result["ssim_per_sample"]) == {"0", "1", "2"}
    assert result["lpips"] is None and result["lpips_per_sample"] == {} and result["lpips_image_mean"] is None
    assert result["psnr_per_sample"]["0"] > result["psnr_per_sample"]["2"]  # more noise, lower PSNR
    assert "*_image_mean" in result["definitions"]


def test_swd_compares_the_paired_restorations_with_their_references_as_sets(folders):
    restored, reference = folders
    result = evaluate_folders(restored, reference, fid=False, lpips=False)
    expected = swd.swd(_batch(restored), _batch(reference))  # the same images as two tensors, same settings
    assert result["swd"] == pytest.approx(expected.mean, rel=1e-5) and result["swd"] > 0
    assert len(result["swd_levels"]) == 1
    assert result["swd_settings"]["levels"] == 1 and result["swd_settings"]["seed"] == 0
    assert "swd" in result["definitions"]
    same = evaluate_folders(reference, reference, fid=False, lpips=False)
    assert same["swd"] == 0.0 and same["psnr"] == np.inf  # identical sets
    reseeded = evaluate_folders(restored, reference, fid=False, lpips=False, swd_seed=1)
    assert reseeded["swd"] != result["swd"] and reseeded["swd"] == pytest.approx(result["swd"], rel=0.2)


def test_swd_counts_each_reference_once_however_many_samples_it_has(sampled):
    restored, reference, _ = sampled  # 6 samples of 3 references
    with pytest.warns(EvaluationWarning):
        samples = evaluate_folders(restored, reference, fid=False, lpips=False)
    counts = samples["swd_settings"]["descriptors"][0]
    assert counts[0] == 2 * counts[1] and samples["swd"] > 0


def test_an_exact_name_match_wins_over_a_sample_suffix(sampled):
    restored, reference, expected = sampled
    _save(reference / "b_s1.png", np.asarray(Image.open(restored / "b_s1.png")))  # a reference named b_s1
    with pytest.warns(EvaluationWarning):
        result = evaluate_folders(restored, reference, fid=False, lpips=False)
    rows = {r["name"]: r for r in result["per_image"]}
    assert (rows["b_s1"]["reference"], rows["b_s1"]["sample"], rows["b_s1"]["psnr"]) == ("b_s1", None, np.inf)
    assert rows["b_s0"]["reference"] == "b" and result["num_reference_images"] == 4
    assert result["psnr_per_sample"]["1"] == pytest.approx(expected["a_s1"][2])


def test_one_restoration_per_image_has_no_sample_index(folders):
    result = evaluate_folders(*folders, fid=False, lpips=False)
    assert all(r["sample"] is None and r["reference"] == r["name"] for r in result["per_image"])
    assert result["sample_indices"] == [] and result["psnr_per_sample"] == {}
    assert result["samples_per_image"] == {"min": 1, "max": 1} and result["num_reference_images"] == 6
    assert result["ssim_image_mean"] == pytest.approx(result["ssim"])


def test_hidden_files_are_skipped_in_both_folders(folders):
    restored, reference = folders
    for folder in (restored, reference):
        (folder / "._a.png").write_bytes(b"macOS resource fork, not a PNG")
        (folder / ".ipynb_checkpoints").mkdir()
        (folder / ".ipynb_checkpoints" / "b.png").write_bytes(b"junk")
    (restored / "._zz_s0.png").write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unreadable or unpaired file reported
        result = evaluate_folders(restored, reference, feature_extractor=TinyFeatures(), lpips=False)
    assert sorted(r["name"] for r in result["per_image"]) == sorted(NAMES)
    assert result["num_unreadable"] == 0 and result["num_unpaired"] == 0 and result["fid"] is not None


def test_samples_take_the_label_of_their_image(sampled, tmp_path):
    restored, _, expected = sampled
    (tmp_path / "labels.csv").write_text("a,1\nb,0\nsub/c,1\nb_s1,1\n")  # b_s1 has a label of its own
    result = evaluate_folders(restored, labels=tmp_path / "labels.csv", classifier=brightness_classifier)
    rows = {r["name"]: r for r in result["per_image"]}
    assert {key: rows[key]["label"] for key in expected} == {
        "a_s0": 1, "a_s1": 1, "a_s2": 1, "b_s0": 0, "b_s1": 1, "sub/c_s0": 1
    }  # fmt: skip
    assert "label" not in rows["x_s0"] and result["num_labeled"] == 6


# ------------------------------------------------------------------------------------------- LPIPS


@pytest.fixture
def large(tmp_path):
    """reference/ and restored/ of 40x48 images (AlexNet needs >= 31 px): p0 noisy, p1 noisier, p2 a copy."""
    rng = np.random.default_rng(5)
    for i, noise in enumerate([6, 20, 0]):
        clean = np.kron(rng.uniform(0, 255, size=(10, 12, 3)), np.ones((4, 4, 1))).astype(np.uint8)
        _save(tmp_path / "reference" / f"p{i}.png", clean)
        _save(tmp_path / "restored" / f"p{i}.png", np.clip(clean + rng.normal(0, noise, clean.shape), 0, 255)
              .astype(np.uint8))  # fmt: skip
    return tmp_path / "restored", tmp_path / "reference"


def test_lpips_per_pair_matches_the_metric_on_the_files(large, alexnet_file):
    pytest.importorskip("lpips")
    restored, reference = large
    result = evaluate_folders(restored, reference, fid=False, lpips_weights=alexnet_file, batch_size=2)
    metric = perceptual.load_lpips("alex", alexnet_file)
    rows = {r["name"]: r for r in result["per_image"]}
    for name in ("p0", "p1", "p2"):
        x, y = (_batch(folder)[int(name[1]):int(name[1]) + 1] / 127.5 - 1 for folder in (restored, reference))
        with torch.no_grad():
            assert rows[name]["lpips"] == pytest.approx(metric(x, y).item(), rel=1e-5, abs=1e-7)
    assert rows["p2"]["lpips"] == 0 and 0 < rows["p0"]["lpips"] < rows["p1"]["lpips"]
    assert result["lpips"] == pytest.approx(np.mean([r["lpips"] for r in rows.values()]))
    assert result["lpips_net"] == "alex" and not result["notes"]
    assert result["lpips_image_mean"] == pytest.approx(result["lpips"])


def test_lpips_skipped_with_a_note_keeps_psnr(large, alexnet_file, tmp_path, monkeypatch):
    restored, reference = large
    _no_weights(monkeypatch, tmp_path)
    result = evaluate_folders(restored, reference, fid=False)
    assert result["lpips"] is None and result["lpips_net"] is None and result["psnr"] == np.inf
    assert any(n.startswith("LPIPS skipped") and "alexnet-owt-7be5be79.pth" in n for n in result["notes"])
    monkeypatch.setitem(sys.modules, "lpips", None)  # the package is not installed
    result = evaluate_folders(restored, reference, fid=False, lpips_weights=alexnet_file)
    assert result["lpips"] is None and result["ssim"] is not None
    assert any(n.startswith("LPIPS skipped") and "pip install lpips" in n for n in result["notes"])
    assert not evaluate_folders(restored, reference, fid=False, lpips=False)["notes"]


def test_lpips_skipped_for_images_smaller_than_the_backbone_accepts(folders, alexnet_file):
    pytest.importorskip("lpips")
    result = evaluate_folders(*folders, fid=False, lpips_weights=alexnet_file)  # 24x32 images
    assert result["lpips"] is None and result["psnr"] == np.inf
    assert "LPIPS skipped for 6 pair(s) smaller than 31x31 pixels, the alex backbone's minimum" in result["notes"]


# -------------------------------------------------------------------------------------- i2sb-eval


def test_cli_writes_table_and_json(folders, tmp_path, monkeypatch, capsys):
    restored, reference = folders
    _no_weights(monkeypatch, tmp_path)
    (restored / "metrics.json").write_text("old")
    assert main([f"restored={restored}", f"reference={reference}"]) == 0
    out = capsys.readouterr().out
    assert "sub/c" in out and "PSNR [dB]  inf" in out and "note: FID skipped" in out
    assert f"metrics written to {restored.parent / 'restored_metrics.json'}" in out
    data = json.loads((restored.parent / "restored_metrics.json").read_text())
    assert re.search(r"SWD x1e3   \d+\.\d\d  \(levels fine..coarse \d+\.\d; 7x7 Laplacian-pyramid patches", out)
    assert data["swd"] > 0 and data["swd_settings"]["projections"] == 128
    assert data["psnr"] == "inf" and data["num_pairs"] == 6 and data["fid"] is None
    assert {r["name"] for r in data["per_image"]} == set(NAMES)
    rows = {r["name"]: r for r in data["per_image"]}
    assert rows["sub/c"]["psnr"] == "inf" and rows["a"]["psnr"] == pytest.approx(
        evaluate_folders(restored, reference, fid=False)["per_image"][0]["psnr"]
    )
    assert sorted(p.name for p in restored.iterdir() if p.is_file()) == [
        "a.png",
        "b.png",
        "e.png",
        "f.png",
        "metrics.json",  # the user's own file: i2sb-eval writes beside the folder it evaluates, never into it
    ]
    assert (restored / "metrics.json").read_text() == "old" and "metrics written to " in out

    assert main([str(restored), str(reference), "fid=false", f"json={tmp_path / 'out' / 'm.json'}"]) == 0
    assert json.loads((tmp_path / "out" / "m.json").read_text())["num_images"] == 6
    assert "FID skipped" not in capsys.readouterr().out


def test_cli_exits_1_for_an_empty_file_or_a_size_mismatch_after_scoring_the_rest(folders, tmp_path, capsys):
    restored, reference = folders
    kept = (restored / "f.png").read_bytes()
    (restored / "f.png").write_bytes(b"")  # a 0-byte file: unreadable
    assert main([str(restored), str(reference), "fid=false", "json=false"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and f"unreadable image {restored / 'f.png'}" in captured.err
    assert "images     5 (5 paired with 5 references, 1 per reference, 1 unreadable files skipped)" in captured.out
    (restored / "f.png").write_bytes(kept)
    _save(restored / "e.png", np.zeros((H + 1, W, 3), np.uint8))
    assert main([str(restored), str(reference), "fid=false", "json=false"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "e.png is 32x25 but reference" in captured.err
    assert "5 paired" in captured.out and "1 pairs of different sizes not scored" in captured.out
    (restored / "notes.heic").write_bytes(b"x")
    assert main([str(restored), str(reference), "fid=false", "json=false"]) == 1
    assert "not supported images: notes.heic" in capsys.readouterr().out  # said, not silently left out


def test_cli_no_json_and_summary_only_for_many_images(folders, tmp_path, monkeypatch, capsys):
    restored, reference = folders
    monkeypatch.setattr(report, "MAX_TABLE_ROWS", 3)
    assert main([str(restored), str(reference), "fid=false", "json=false"]) == 0
    out = capsys.readouterr().out
    assert "sub/c" not in out and "images     6 (6 paired" in out and not _metrics_written(restored)
    assert main([str(restored), str(reference), "fid=false", "json=false", "per_image=true"]) == 0
    assert "sub/c" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/nowhere", "{ref}"], "image folder not found: {tmp}/nowhere"),
        (["{tmp}/empty", "{ref}"], "no images"),
        (["{tmp}/other", "{ref}"], "no restored image has a counterpart"),
        (["{res}"], "nothing to compute"),
        (["{res}", "{ref}", "inception={tmp}/inc.pth"], "weights file not found: {tmp}/inc.pth"),
        (["{res}", "labels={tmp}/labels.csv", "resnet={tmp}/r.pth"], "weights file not found: {tmp}/r.pth"),
        (["{res}", "labels={tmp}/none.csv"], "labels file not found"),
        (["{res}", "fid_ref={tmp}/none.npz"], "FID reference not found"),
        (["{res}", "{ref}", "fid=false", "lpips_weights={tmp}/a.pth"], "weights file not found: {tmp}/a.pth"),
    ],
)
def test_cli_errors_exit_1_with_one_line(folders, tmp_path, capsys, args, message):
    restored, reference = folders
    (tmp_path / "empty").mkdir()
    _save(tmp_path / "other" / "zzz.png", np.zeros((H, W, 3), np.uint8))
    (tmp_path / "labels.csv").write_text("a,1\n")
    fill = {"tmp": str(tmp_path), "res": str(restored), "ref": str(reference)}
    assert main([a.format(**fill) for a in args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("i2sb-eval: error: ") and message.format(**fill) in err[0]


@pytest.mark.parametrize("args, message", [
    ([], "nothing to do"),
    (["{res}", "{ref}", "batch_size=0"], "batch_size=0: must be a positive integer"),
    (["{res}", "{ref}", "batch_size=two"], "batch_size"),
    (["{res}", "{ref}", "lpips_net=squeeze"], "lpips_net=squeeze: must be one of alex, vgg"),
    (["{res}", "{ref}", "fid=false", "json={tmp}/m.png"], "image extension"),
    (["{res}", "{ref}", "colour=true"], "colour"),
    (["{res}", "{ref}", "--frobnicate"], "unknown option '--frobnicate'"),
    (["{res}", "{ref}", "--json"], "--json needs a value; write json=VALUE"),
])
def test_cli_usage_errors_exit_2_with_one_line(folders, tmp_path, capsys, args, message):
    restored, reference = folders
    fill = {"tmp": str(tmp_path), "res": str(restored), "ref": str(reference)}
    assert main([a.format(**fill) for a in args]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "deprecated" not in line]
    assert len(err) == 1 and err[0].startswith("i2sb-eval: error: ") and message.format(**fill) in err[0]
    assert not _metrics_written(restored)


def test_cli_help_lists_every_key_its_default_an_example_and_where_to_get_weights(capsys):
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    for key, default in [("restored", "required"), ("reference", "null"), ("fid", "true"), ("fid_ref", "null"),
                         ("labels", "null"), ("inception", "null"), ("resnet", "null"), ("lpips", "true"),
                         ("lpips_net", "alex"), ("lpips_weights", "null"), ("json", "null"),
                         ("per_image", "false"), ("device", "auto"), ("batch_size", "32")]:
        assert re.search(rf"^  {key}=\s+{default}\s", help_text, re.MULTILINE), key
    assert "example: i2sb-eval restored=" in help_text
    assert metrics.INCEPTION_WEIGHTS.url in help_text  # where to get the weights, on one line
    assert perceptual.BACKBONE_WEIGHTS["alex"].url in help_text and "lpips_weights=PATH" in help_text


def test_cli_old_flags_still_work_with_one_deprecation_line(folders, tmp_path, capsys):
    restored, reference = folders
    args = [str(restored), str(reference), "--no-fid", "--no-lpips", f"--json={tmp_path / 'm.json'}",
            "--batch-size", "2", "--device", "cpu", "--per-image"]
    assert main(args) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "deprecated" in line]
    assert warning == [f"i2sb-eval: warning: --flags are deprecated; write fid=false lpips=false "
                       f"json={tmp_path / 'm.json'} batch_size=2 device=cpu per_image=true (see i2sb-eval --help)"]
    assert json.loads((tmp_path / "m.json").read_text())["num_pairs"] == 6 and "sub/c" in captured.out
    assert main([str(restored), str(reference), "--no-fid", "--no-json"]) == 0
    assert not _metrics_written(restored)


def test_cli_lpips_and_samples_in_table_and_json(large, alexnet_file, tmp_path, monkeypatch, capsys):
    pytest.importorskip("lpips")
    restored, reference = large
    _no_weights(monkeypatch, tmp_path)
    for k in range(2):  # p0 also restored twice as samples p0_s0, p0_s1
        _save(restored / f"p0_s{k}.png", np.asarray(Image.open(restored / f"p{k}.png")))
    assert main([str(restored), str(reference), "fid=false", f"lpips_weights={alexnet_file}"]) == 0
    out = capsys.readouterr().out
    data = json.loads((restored.parent / f"{restored.name}_metrics.json").read_text())
    assert data["lpips_net"] == "alex" and data["num_pairs"] == 5 and data["num_reference_images"] == 3
    assert set(data["lpips_per_sample"]) == {"0", "1"} and data["lpips_image_mean"] > 0
    assert f"LPIPS      {data['lpips']:.4f}  (mean over all pairs)  (alex backbone, v0.1)" in out
    assert "5 paired with 3 references, 1-3 per reference" in out
    assert f"sample 1    {data['psnr_per_sample']['1']:>10.3f}" in out and "image mean" in out
    assert "p0_s1" in out and "LPIPS skipped" not in out

    assert main([str(restored), str(reference), "fid=false", "lpips=false", "json=false"]) == 0
    out = capsys.readouterr().out
    assert "LPIPS      -" in out and "note" not in out
    monkeypatch.setenv("I2SB_LPIPS_BACKBONE", str(alexnet_file))
    assert main([str(restored), str(reference), "fid=false", "json=false"]) == 0
    assert "(alex backbone, v0.1)" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_fid_with_clean_fid_inception_weights_file(folders, tmp_path, monkeypatch, capsys):
    """Weights from $I2SB_INCEPTION, reference statistics from an ADM-style .npz: the statistics reaching
    the Fréchet distance are those of the clean-fid Inception features of the restored images (the
    2048-d sqrtm itself, ~10 s here, is tested in test_metrics)."""
    restored, _ = folders
    for name in ["b", "sub/c", "sub/d", "e"]:  # two images: Inception-v3 at 299x299 is slow on CPU
        (restored / f"{name}.png").unlink()
    _no_weights(monkeypatch, tmp_path)
    net = metrics.fid_inception_v3()
    state = {k: torch.full_like(v, 0.15) if k.endswith("running_var") else v for k, v in net.state_dict().items()}
    torch.save(state, tmp_path / "pt_inception.pth")
    monkeypatch.setenv(metrics.INCEPTION_WEIGHTS.env_var, str(tmp_path / "pt_inception.pth"))
    ref_mu, ref_sigma = np.linspace(0, 1, 2048), np.eye(2048)
    np.savez(tmp_path / "ref.npz", arr_0=np.zeros((1, 8, 8, 3), np.uint8), mu=ref_mu, sigma=ref_sigma)
    seen = []
    monkeypatch.setattr(metrics, "fid_from_stats", lambda *stats: seen.append(stats) or 42.0)
    args = [f"restored={restored}", f"fid_ref={tmp_path / 'ref.npz'}", f"json={tmp_path / 'm.json'}"]
    assert main(args) == 0
    assert json.loads((tmp_path / "m.json").read_text())["fid"] == 42.0
    assert "FID        42.000" in capsys.readouterr().out
    net.load_state_dict(state)
    with torch.no_grad():
        mu, sigma = metrics.feature_stats(metrics.CleanFIDInception(net)(_batch(restored)))
    (got_mu, got_sigma, got_ref_mu, got_ref_sigma), *_ = seen
    np.testing.assert_allclose(got_mu, mu, rtol=1e-4, atol=1e-6 * np.abs(mu).max())
    np.testing.assert_allclose(got_sigma, sigma, rtol=1e-4, atol=1e-6 * np.abs(sigma).max())
    np.testing.assert_array_equal(got_ref_mu, ref_mu)
    np.testing.assert_array_equal(got_ref_sigma, ref_sigma)
