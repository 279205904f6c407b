"""Drawing for the reports without a plotting library: PNG encoding, a colour ramp, SVG.

The reports need image slices with outlines and heat-map cells (pixels: PNG), a bar chart and
heat-map labels (shapes and text: SVG, crisp at any zoom and searchable). Drawing them directly
costs milliseconds; importing and running matplotlib for a study report cost about a second,
more than measuring the study (benchmarks/README.md).
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from ..svg import svg_document as svg_document  # re-exported for the figures
from ..svg import svg_text as svg_text

__all__ = [
    "CALL_RGB",
    "CSS",
    "MAGMA_R",
    "MISSING_RGB",
    "PNG_ZLIB_LEVEL",
    "call_palette",
    "hex_colour",
    "png_bytes",
    "png_data_uri",
    "png_indexed_bytes",
    "ramp_rgb",
    "signed",
    "svg_call_legend",
    "svg_ramp_legend",
]


def signed(value: float, digits: int = 2) -> str:
    """``value`` with its sign, never "-0.00": a contribution that rounds to zero is zero.

    Examples
    --------
    >>> signed(-0.0004), signed(0.37), signed(-1.234, 1)
    ('+0.00', '+0.37', '-1.2')
    """
    rounded = round(float(value), digits) + 0.0  # -0.0 + 0.0 is +0.0
    return f"{rounded:+.{digits}f}"


# "magma" reversed (light = low, dark = high), sampled at 9 evenly spaced points: the
# perceptually uniform colour map of van der Walt & Smith (CC0), as matplotlib ships it.
MAGMA_R = np.array(
    [
        (252, 253, 191),
        (254, 194, 135),
        (251, 135, 97),
        (229, 80, 100),
        (181, 54, 122),
        (129, 37, 129),
        (79, 18, 123),
        (28, 16, 68),
        (0, 0, 4),
    ],
    dtype=float,
)
MISSING_RGB = (232, 232, 232)
# zlib level 3: 2.7x faster than the default 6 on report panels, files 1.5 % larger (measured).
PNG_ZLIB_LEVEL = 3


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 array as a PNG file (8-bit RGB, no filtering).

    Parameters
    ----------
    rgb : ndarray of uint8, shape (H, W, 3)
        Rows top to bottom.

    Returns
    -------
    bytes
        The PNG file.
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W, 3) image, got shape {rgb.shape}")
    height, width = rgb.shape[:2]
    rows = np.zeros((height, 1 + 3 * width), np.uint8)  # filter byte 0 ("none") per row
    rows[:, 1:] = rgb.reshape(height, 3 * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_ZLIB_LEVEL))
        + chunk(b"IEND", b"")
    )


def ramp_rgb(values: np.ndarray) -> np.ndarray:
    """Colours of values in [0, 1] on the reversed magma ramp; NaN gets light grey.

    Returns
    -------
    ndarray of uint8, shape values.shape + (3,)
    """
    values = np.asarray(values, dtype=float)
    missing = ~np.isfinite(values)
    position = np.clip(np.nan_to_num(values), 0.0, 1.0) * (len(MAGMA_R) - 1)
    low = np.minimum(position.astype(int), len(MAGMA_R) - 2)
    weight = (position - low)[..., None]
    rgb = MAGMA_R[low] * (1.0 - weight) + MAGMA_R[low + 1] * weight
    rgb[missing] = MISSING_RGB
    return np.round(rgb).astype(np.uint8)


def hex_colour(rgb: Sequence[int] | np.ndarray) -> str:
    """``#rrggbb`` of an RGB triple of 0-255 values."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in rgb))


def svg_ramp_legend(x: float, y: float, caption: str, steps: int = 40) -> str:
    """A horizontal colour-ramp legend (160 px wide, 10 px high) with a caption on its right."""
    swatches = "".join(
        f'<rect x="{x + i * 4:.1f}" y="{y:.1f}" width="4.5" height="10" '
        f'fill="{hex_colour(ramp_rgb(i / (steps - 1)))}"/>'
        for i in range(steps)
    )
    return swatches + svg_text(x + steps * 4 + 6, y + 9, caption, 10)


CALL_RGB = {
    "IMNM": (31, 111, 209),
    "DM": (209, 98, 31),
    "dystrophy": (46, 150, 70),
    "indeterminate": (170, 170, 170),
}
"""Colour of each call, in the evidence bars and the cohort heat map's side bars."""
_MORE_CLASS_RGB = ((148, 82, 180), (140, 100, 60), (214, 80, 150), (20, 150, 160))


def call_palette(classes: list[str]) -> dict[str, tuple[int, int, int]]:
    """A colour per call: :data:`CALL_RGB` where it has one, others in turn, grey last.

    Examples
    --------
    >>> list(call_palette(["IMNM", "DM", "antisynthetase"]))
    ['IMNM', 'DM', 'antisynthetase', 'indeterminate']
    """
    palette, spare = {}, list(_MORE_CLASS_RGB)
    for name in classes:
        if name not in palette and name != "indeterminate":
            palette[name] = CALL_RGB.get(name) or (spare.pop(0) if spare else (90, 90, 90))
    palette["indeterminate"] = CALL_RGB["indeterminate"]
    return palette


def svg_call_legend(x: float, y: float, palette: dict[str, tuple[int, int, int]]) -> str:
    """Swatches and names of every call colour, in a row."""
    out = [svg_text(x, y + 9, "calls:", 10)]
    at = x + 36
    for name, rgb in palette.items():
        out.append(
            f'<rect x="{at:.1f}" y="{y:.1f}" width="10" height="10" fill="{hex_colour(rgb)}"/>'
        )
        out.append(svg_text(at + 13, y + 9, name, 10))
        at += 22 + 6.2 * len(name)
    return "".join(out)


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:16px auto;color:#222;
max-width:1200px;padding:0 16px;overflow-wrap:break-word}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}
h3{font-size:14px;margin:14px 0 4px}
.disclaimer{background:#fff6d6;border:1px solid #e6c200;padding:8px 12px;font-size:13px}
.qc{background:#fde8e8;border:1px solid #d33;padding:6px 12px;font-size:13px}
.ok{background:#e8f5e8;border:1px solid #6a6;padding:6px 12px;font-size:13px}
.call{font-size:20px;padding:10px 14px;border-radius:6px;display:inline-block;margin:8px 0}
.IMNM{background:#d6e9ff;border:2px solid #1f6fd1}.DM{background:#ffe0cc;border:2px solid #d1621f}
.dystrophy{background:#dcf2e0;border:2px solid #2e9646}
.indeterminate{background:#f2f2f2;border:2px dashed #888;color:#444}
table{border-collapse:collapse;font-size:12px;margin:8px 0;max-width:100%}
th,td{border:1px solid #ccc;padding:3px 5px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td{white-space:nowrap}td.l,th.l{text-align:left;white-space:normal}
td.f{overflow-wrap:anywhere}
tr.na td{color:#999}
img{max-width:100%;height:auto}svg{max-width:100%;height:auto}
.levels{display:flex;flex-wrap:wrap;gap:12px}
.panel{flex:1 1 400px;max-width:600px;margin:0}
.frame{position:relative;background:#000;line-height:0}.frame img{width:100%;display:block}
.mk{position:absolute;color:#fff;font:bold 15px sans-serif;text-shadow:0 0 3px #000,0 0 2px #000}
.mk.left{left:5px;top:45%}.mk.right{right:5px;top:45%}.mk.top{top:9px;left:49%}
.mk.bottom{bottom:9px;left:49%}
figcaption{font-size:12px;color:#444;margin-top:3px}
.legend{display:flex;flex-wrap:wrap;align-items:center;gap:4px 18px;font-size:12px}
.swatch i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}
.small{font-size:12px;color:#555}ol.refs li{font-size:12px;margin:3px 0}
@media (max-width:900px){body{padding:0 8px}table{font-size:11px}
th,td{padding:2px 3px;white-space:normal}}
"""
"""Inline style sheet shared by the study report and the cohort index (no external files)."""


def png_data_uri(rgb: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of an (H, W, 3) uint8 array (see :func:`png_bytes`)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode("ascii")


def png_indexed_bytes(index: np.ndarray, palette: np.ndarray, level: int = 1) -> bytes:
    """Encode an image of palette indices as a PNG file (8-bit palette, no filtering).

    Parameters
    ----------
    index : ndarray of uint8, shape (H, W)
        Rows top to bottom.
    palette : ndarray of uint8, shape (N, 3)
        N <= 256 colours.
    level : int
        zlib level (1: fastest; panels are noisy images that higher levels barely shrink).

    Returns
    -------
    bytes
        The PNG file.
    """
    index = np.ascontiguousarray(index, dtype=np.uint8)
    if index.ndim != 2 or min(index.shape) < 1 or len(palette) > 256:
        raise ValueError(f"expected an (H, W) index image and <= 256 colours, got {index.shape}")
    height, width = index.shape
    rows = np.zeros((height, 1 + width), np.uint8)  # filter byte 0 ("none") per row
    rows[:, 1:] = index

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    colours = np.ascontiguousarray(palette, np.uint8).tobytes()
    data = zlib.compress(rows.tobytes(), level)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"PLTE", colours)
        + chunk(b"IDAT", data)
        + chunk(b"IEND", b"")
    )
