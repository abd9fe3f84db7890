"""The HTML report: self-contained, escaped, and really drawn by a browser (headless Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from bastion.report import image_to_data_uri, perturbation_to_data_uri, render_html, write_html

SECTIONS = ["summary", "attacks", "robustness-curve", "per-class-accuracy", "gallery", "provenance", "config"]
EVIL = "<script>alert(1)</script>"


def make_report(n_gallery: int = 4, model: str = "zoo:mnist-cnn") -> dict[str, Any]:
    """A realistic report.json dictionary, with real PNG images made from random tensors."""
    generator = torch.Generator().manual_seed(0)
    gallery = []
    for i in range(n_gallery):
        x = torch.rand(1, 28, 28, generator=generator)
        x_adv = (x + 0.3 * torch.randn(1, 28, 28, generator=generator).sign()).clamp(0, 1)
        gallery.append({"index": 8000 + i, "label": i, "clean_prediction": i,
                        "adversarial_prediction": (i + 3) % 10, "attack": "apgd-ce",
                        "norm": float((x_adv - x).abs().max()),
                        "clean_png": image_to_data_uri(x, scale=4),
                        "adversarial_png": image_to_data_uri(x_adv, scale=4),
                        "perturbation_png": perturbation_to_data_uri(x_adv - x, scale=4)})
    robust = [0.2, 0.7, 0.6, 0.35, 0.8, 0.55, 0.9, 0.4, 0.65, 0.75]
    passes = {"forward": 4, "backward": 2, "forward_samples": 2000, "backward_samples": 1000}
    return {
        "schema_version": 1, "run_id": "20261122-051900-ab12", "created_at": "2026-11-22T05:19:00+00:00",
        "summary": {"clean_accuracy": 0.99, "robust_accuracy": 0.583, "norm": "linf", "eps": 0.3,
                    "n_samples": 1000, "model": model, "data": "mnist-sample:eval"},
        "clean": {"top1": 0.99, "top5": 1.0, "n_correct": 990},
        "attacks": [
            {"name": "fgsm", "role": "sanity check", "settings": {"loss": "ce"}, "norm": "linf", "eps": 0.3,
             "attacked": 990, "fooled": 300, "robust_accuracy": 0.69, "passes": passes, "seconds": 0.8},
            {"name": "apgd-ce", "role": "main",
             "settings": {"steps": 100, "loss": "ce", "schedule": [0.22, 0.09]}, "norm": "linf", "eps": 0.3,
             "attacked": 690, "fooled": 107, "robust_accuracy": 0.583, "passes": passes, "seconds": 12.3},
        ],
        "robust_accuracy_standalone": {"fgsm": 0.69, "apgd-ce": 0.6},
        "curve": [{"eps": e, "accuracy": max(0.0, 0.99 - 1.3 * e)}
                  for e in (0.0, 0.075, 0.15, 0.225, 0.3, 0.45, 0.6)],
        "per_class": [{"label": k, "name": str(k), "n": 100, "clean_accuracy": 0.98, "robust_accuracy": r,
                       "flagged": r < 0.5} for k, r in enumerate(robust)],
        "class_floor": 0.5,
        "gallery": gallery,
        "warnings": ["FGSM alone reports 69.0% robust accuracy but the full cascade 58.3%."],
        "provenance": {"seed": 0, "versions": {"bastion": "0.1.0", "torch": "2.13.0", "python": "3.11.7"},
                       "model": {"spec": model, "fingerprint": "ab12"}, "data": {"spec": "mnist", "n": 1000},
                       "device": "cpu", "command": "bastion evaluate --model zoo:mnist-cnn"},
        "config": {"eps": 0.3, "norm": "linf", "attacks": {"apgd": {"steps": 100}}},
    }


def test_every_section_is_rendered_in_order() -> None:
    html = render_html(make_report())
    assert html.startswith("<!DOCTYPE html>")
    positions = [html.index(f'<section id="{name}"') for name in SECTIONS]
    assert positions == sorted(positions)
    assert html.index("<header>") < positions[0]
    assert 'id="curve"' in html and 'id="per-class"' in html
    assert html.count('class="gallery-img"') == 12 and "image-rendering:pixelated" in html
    assert '<li class="warning">' in html and "zoo:mnist-cnn" in html and "steps=100" in html


def test_strings_from_the_report_are_escaped() -> None:
    report = make_report(model=EVIL)
    report["warnings"].append(EVIL)
    report["attacks"][0]["name"] = EVIL
    report["attacks"][0]["settings"] = {EVIL: EVIL}
    report["per_class"][0]["name"] = EVIL
    report["config"][EVIL] = EVIL
    report["gallery"][0]["clean_png"] = "javascript:alert(1)"
    report["gallery"][1]["clean_png"] = '" onerror="alert(1)'
    html = render_html(report)
    assert EVIL not in html and "alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1  # only the page's own
    assert "javascript:" not in html and 'onerror="' not in html


def test_no_network_resources() -> None:
    html = render_html(make_report())
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"@import|url\(", html)
    assert "default-src 'none'" in html  # the CSP forbids the page any network access


def test_missing_optional_keys() -> None:
    html = render_html({"schema_version": 1})
    for name in SECTIONS:
        assert f'<section id="{name}"' in html
    partial = make_report()
    for key in ("curve", "per_class", "gallery", "warnings", "robust_accuracy_standalone", "class_floor"):
        del partial[key]
    partial["attacks"][0]["seconds"] = None
    partial["summary"]["robust_accuracy"] = float("nan")
    assert "No curve" in render_html(partial)


def test_write_html_is_atomic_and_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    assert write_html(make_report(1), target) == target
    first = target.read_text(encoding="utf-8")
    write_html(make_report(2), target)
    assert target.read_text(encoding="utf-8") != first
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]  # no temporary file left


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is required in CI (install the 'chromium' package): none on PATH")
    pytest.skip("headless Chromium not installed (chromium, chromium-browser or google-chrome)")


def run_chromium(binary: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    result = subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.browser
def test_browser_draws_the_plots_and_the_gallery(tmp_path: Path) -> None:
    binary = find_chromium()
    n_gallery = 5
    # A model name that would set an attribute if it ever ran as script.
    page = write_html(make_report(n_gallery, model="<script>document.body.dataset.pwned=1</script>"),
                      tmp_path / "report.html")
    dom = run_chromium(binary, tmp_path, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()).stdout

    body = re.search(r"<body[^>]*>", dom)
    assert body, dom[:2000]
    rendered = re.search(r'data-rendered="images=(\d+);loaded=(\d+);svgs=(\d+)"', body.group(0))
    assert rendered, f"the page's script did not run: {body.group(0)}"
    images, loaded, svgs = map(int, rendered.groups())
    assert images == loaded == 3 * n_gallery
    assert svgs >= 2
    assert "pwned" not in body.group(0)

    curve = re.search(r'<svg[^>]*id="curve".*?</svg>', dom, re.DOTALL)
    assert curve and '<polyline class="series"' in curve.group(0)
    per_class = re.search(r'<svg[^>]*id="per-class".*?</svg>', dom, re.DOTALL)
    assert per_class and per_class.group(0).count('<rect class="bar') == 20

    shot = tmp_path / "report.png"
    run_chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", "--hide-scrollbars",
                 page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1200, 3000)
    assert len(data) > 50_000  # a blank page compresses to a few kilobytes
