"""The PNG encoder (checked by an independent decoder) and the SVG charts (well-formed, escaped, robust)."""

from __future__ import annotations

import base64
import math
import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
import torch

from bastion.report import bar_chart, encode_png, image_to_data_uri, line_chart, perturbation_to_data_uri

SVG = "{http://www.w3.org/2000/svg}"


def decode_png(data: bytes) -> tuple[int, int, int, np.ndarray]:
    """Decode a PNG written with filter type 0 only; return width, height, colour type and the pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    assert [k for k, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, compression, filtering, interlace) == (8, 0, 0, 0)
    channels = {0: 1, 2: 3}[colour]
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all(), "every row uses filter type 0"
    pixels = rows[:, 1:].reshape(height, width, channels)
    return width, height, colour, pixels[..., 0] if channels == 1 else pixels


def uri_pixels(uri: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return decode_png(base64.b64decode(uri[len(prefix) :]))[3]


def test_encode_gray_round_trips() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7), dtype=np.uint8)
    width, height, colour, decoded = decode_png(encode_png(pixels))
    assert (width, height, colour) == (7, 5, 0)
    np.testing.assert_array_equal(decoded, pixels)


def test_encode_rgb_round_trips() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, size=(4, 9, 3), dtype=np.uint8)
    width, height, colour, decoded = decode_png(encode_png(pixels))
    assert (width, height, colour) == (9, 4, 2)
    np.testing.assert_array_equal(decoded, pixels)


def test_encode_accepts_non_contiguous_views() -> None:
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)[:, ::-1]
    np.testing.assert_array_equal(decode_png(encode_png(pixels))[3], pixels)


@pytest.mark.parametrize(
    ("pixels", "error"),
    [
        (np.zeros((4, 4), dtype=np.float32), TypeError),
        ([[0, 1], [2, 3]], TypeError),
        (np.zeros((4, 4, 4), dtype=np.uint8), ValueError),
        (np.zeros((0, 4), dtype=np.uint8), ValueError),
        (np.zeros(4, dtype=np.uint8), ValueError),
    ],
)
def test_encode_rejects_bad_input(pixels: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_png(pixels)  # type: ignore[arg-type]


def test_image_uri_clamps_quantizes_and_scales_gray() -> None:
    image = torch.tensor([[[-0.5, 0.0, 0.5], [1.0, 1.5, 0.25]]])  # (1, 2, 3), values outside [0, 1]
    pixels = uri_pixels(image_to_data_uri(image, scale=3))
    assert pixels.shape == (6, 9)
    expected = np.array([[0, 0, 128], [255, 255, 64]], dtype=np.uint8)
    np.testing.assert_array_equal(pixels, expected.repeat(3, axis=0).repeat(3, axis=1))


def test_image_uri_rgb_channel_order() -> None:
    image = np.zeros((3, 2, 2), dtype=np.float32)
    image[0, 0, 0] = 1.0  # red top-left
    image[2, 1, 1] = 1.0  # blue bottom-right
    pixels = uri_pixels(image_to_data_uri(image))
    assert pixels.shape == (2, 2, 3)
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[1, 1].tolist() == [0, 0, 255]


def test_image_uri_rejects_bad_shapes_and_scales() -> None:
    with pytest.raises(ValueError):
        image_to_data_uri(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError):
        image_to_data_uri(torch.zeros(1, 4, 4), scale=0)


def test_perturbation_uri_amplifies_around_mid_grey() -> None:
    delta = torch.tensor([[[-0.1, 0.0], [0.05, 0.1]]])
    pixels = uri_pixels(perturbation_to_data_uri(delta, scale=2))
    np.testing.assert_array_equal(pixels[::2, ::2], np.array([[0, 128], [191, 255]], dtype=np.uint8))


def test_perturbation_uri_all_zero_is_mid_grey() -> None:
    pixels = uri_pixels(perturbation_to_data_uri(torch.zeros(3, 4, 4)))
    assert pixels.shape == (4, 4, 3) and (pixels == 128).all()


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, so also a valid standalone .svg file
    assert root.tag == f"{SVG}svg" and root.get("viewBox")
    return root


def test_line_chart_structure_and_tooltips() -> None:
    svg = line_chart([0.0, 0.1, 0.2, 0.3], {"pgd": [0.9, 0.6, 0.3, 0.1], "fgsm": [0.9, 0.7, 0.5, 0.4]},
                     x_label="eps", y_label="accuracy", title="Robust accuracy", element_id="curve",
                     x_marker=0.2, x_marker_label="threat model")
    root = parse(svg)
    assert root.get("id") == "curve"
    assert len(root.findall(f".//{SVG}polyline[@class='series']")) == 2
    circles = root.findall(f".//{SVG}circle")
    assert len(circles) == 8 and all(c.find(f"{SVG}title") is not None for c in circles)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"Robust accuracy", "eps", "accuracy", "threat model", "pgd", "fgsm", "0.3", "1"} <= set(texts)
    assert root.findall(f".//{SVG}g[@class='marker']")


def test_line_chart_skips_nan_and_splits_the_line() -> None:
    root = parse(line_chart([0, 1, 2, 3, 4], {"s": [0.5, math.nan, 0.4, 0.3, math.nan]},
                            x_label="x", y_label="y", title="t"))
    assert len(root.findall(f".//{SVG}circle")) == 3
    assert len(root.findall(f".//{SVG}polyline")) == 2
    assert "nan" not in ET.tostring(root, encoding="unicode").lower()


@pytest.mark.parametrize(("xs", "series"), [([], {}), ([], {"s": []}), ([0.3], {"s": [0.5]}),
                                            ([0.0, 0.0], {"s": [math.nan, math.nan]})])
def test_line_chart_degenerate_input(xs: list[float], series: dict[str, list[float]]) -> None:
    root = parse(line_chart(xs, series, x_label="x", y_label="y", title="t"))
    n_finite = sum(math.isfinite(v) for values in series.values() for v in values)
    assert len(root.findall(f".//{SVG}circle")) == n_finite
    if n_finite == 0:
        assert "no data" in [t.text for t in root.iter(f"{SVG}text")]


def test_line_chart_rejects_ragged_series() -> None:
    with pytest.raises(ValueError, match="x values"):
        line_chart([0, 1], {"s": [0.5]}, x_label="x", y_label="y", title="t")


def test_charts_escape_text() -> None:
    evil = "<script>alert(1)</script> & \"quotes\""
    for svg in (line_chart([0, 1], {evil: [0.1, 0.2]}, x_label=evil, y_label=evil, title=evil,
                           element_id=evil),
                bar_chart([evil], {evil: [0.5]}, y_label=evil, title=evil, highlight=[True])):
        assert "<script>" not in svg
        root = parse(svg)
        assert evil in [t.text for t in root.iter(f"{SVG}text")]


def test_bar_chart_groups_highlight_and_marker() -> None:
    labels = ["cat", "dog", "ship"]
    svg = bar_chart(labels, {"clean": [0.9, 0.8, 0.95], "robust": [0.3, math.nan, 0.6]}, y_label="accuracy",
                    title="Per class", highlight=[False, True, False], element_id="per-class",
                    y_marker=0.5, y_marker_label="floor 50%")
    root = parse(svg)
    assert root.get("id") == "per-class"
    bars = [r for r in root.iter(f"{SVG}rect") if (r.get("class") or "").split()[:1] == ["bar"]]
    assert len(bars) == 5  # the NaN is skipped
    assert all(b.find(f"{SVG}title") is not None for b in bars)
    flagged = [b for b in bars if "flagged" in (b.get("class") or "")]
    assert len(flagged) == 1 and "dog" in (flagged[0].find(f"{SVG}title").text or "")
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert "⚠ dog" in texts and "cat" in texts and "floor 50%" in texts
    assert flagged[0].get("fill") not in {b.get("fill") for b in bars if b not in flagged}


def test_bar_chart_empty_and_validation() -> None:
    root = parse(bar_chart([], {}, y_label="y", title="empty"))
    assert "no data" in [t.text for t in root.iter(f"{SVG}text")]
    with pytest.raises(ValueError, match="labels"):
        bar_chart(["a", "b"], {"g": [0.1]}, y_label="y", title="t")
    with pytest.raises(ValueError, match="labels"):
        bar_chart(["a"], {"g": [0.1]}, y_label="y", title="t", highlight=[True, False])


def test_bar_chart_rotates_long_labels_and_grows_with_categories() -> None:
    labels = [f"a rather long class name {i}" for i in range(40)]
    root = parse(bar_chart(labels, {"clean": [0.5] * 40}, y_label="y", title="many"))
    rotated = [t for t in root.iter(f"{SVG}text") if "rotate(-40" in (t.get("transform") or "")]
    assert len(rotated) == 40
    assert float(root.get("width") or 0) > 640


def _marker_label_y(svg):
    import re

    marker = svg.split('<g class="marker">', 1)[1].split("</g>", 1)[0]
    return float(re.search(r'<text[^>]* y="([0-9.]+)"', marker).group(1))


def test_a_marker_label_moves_off_a_line_that_runs_under_it():
    xs = [0.0, 0.5, 1.0, 1.5, 2.0]
    high = line_chart(xs, {"certified": [1.0, 1.0, 1.0, 1.0, 1.0]}, x_marker=0.2, x_marker_label="largest radius",
                      x_label="r", y_label="acc", title="t")
    low = line_chart(xs, {"certified": [0.0, 0.0, 0.0, 0.0, 0.0]}, x_marker=0.2, x_marker_label="largest radius",
                      x_label="r", y_label="acc", title="t")
    assert _marker_label_y(high) > _marker_label_y(low) + 100  # high line: label at the bottom; low line: at the top
