"""The reports as a browser lays them out (headless Chromium, when installed).

Guards against pages that scroll sideways in an 800 px window, images that do not decode,
figure labels drawn over each other, and slice panels shrunk to thumbnails (each must be at
least 400 px wide in a 1,280 px window).
Skipped, with the reason, when no Chromium is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import mri_scoring as ms
from mri_scoring import phantom
from mri_scoring.config import sample_data_dir

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason="no headless Chromium installed (apt-get install chromium): browser layout unchecked",
)
MIN_PANEL_PX = 400
# Appended to a copy of the page: layout metrics as JSON in a <pre>, read from --dump-dom.
PROBE = """<script>
window.addEventListener('load', function () {
  var images = [].slice.call(document.images).map(function (i) {
    var r = i.getBoundingClientRect();
    return {src: i.getAttribute('src').slice(0, 40), width: r.width, right: r.right,
            decoded: i.complete && i.naturalWidth > 0, panel: !!i.closest('.panel')};
  });
  var wide = [].slice.call(document.querySelectorAll('body *')).filter(function (e) {
    return e.getBoundingClientRect().right > window.innerWidth + 0.5;
  }).map(function (e) { return e.tagName; });
  var clashes = [];
  [].slice.call(document.querySelectorAll('svg')).forEach(function (svg) {
    var boxes = [].slice.call(svg.querySelectorAll('text')).map(function (t) {
      return {text: t.textContent, r: t.getBoundingClientRect()};
    }).filter(function (b) { return b.r.width > 0 && b.text.trim(); });
    for (var i = 0; i < boxes.length; i++) {
      for (var j = i + 1; j < boxes.length; j++) {
        var a = boxes[i].r, b = boxes[j].r;
        var w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        var h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        // closer than 3 px side by side reads as one word ("fascial edemaatrophy")
        if (w > -3 && h > 2) { clashes.push(boxes[i].text + ' / ' + boxes[j].text); }
      }
    }
  });
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({inner: window.innerWidth,
    scroll: document.documentElement.scrollWidth, images: images, wide: wide,
    clashes: clashes});
  document.body.appendChild(out);
});
</script>"""


def _layout(page: Path, width: int) -> dict:
    probe = page.with_name(f".probe-{page.stem}-{width}.html")
    probe.write_text(page.read_text(encoding="utf-8") + PROBE, encoding="utf-8")
    done = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--window-size={width},2000", "--virtual-time-budget=5000", "--dump-dom",
         probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"{BROWSER} gave no layout for {page}: {done.stderr[-500:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def _layouts(pages: list[Path], widths: tuple[int, ...] = (800, 1280)) -> dict:
    """(page, width) -> layout; the browsers run four at a time (each mostly waits: ~1 s of
    CPU in ~3 s), which takes the 14 layouts of the samples from ~40 s to ~12 s."""
    jobs = [(page, width) for page in pages for width in widths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(jobs, pool.map(lambda job: _layout(*job), jobs), strict=True))


def _check(page: Path, panels: int, layouts: dict | None = None) -> None:
    layouts = layouts or _layouts([page])
    for width in (800, 1280):
        layout = layouts[page, width]
        assert layout["inner"] == width
        assert layout["scroll"] <= width, (
            f"{page.parent.name} scrolls sideways at {width} px: {layout['scroll']} px wide "
            f"(elements past the edge: {sorted(set(layout['wide']))})"
        )
        assert all(i["decoded"] for i in layout["images"]), f"undecoded image in {page}"
        # Figure labels drawn over or against each other (the heat map's "fascial edema" and
        # "atrophy (1 - index)" titles once ran into one another) are unreadable.
        assert not layout["clashes"], f"{page.parent.name}: overlapping labels {layout['clashes']}"
        shown = [i for i in layout["images"] if i["panel"]]
        assert len(shown) == panels, page
        if width == 1280:
            narrow = [round(i["width"]) for i in shown if i["width"] < MIN_PANEL_PX]
            assert not narrow, f"{page.parent.name}: panels narrower than {MIN_PANEL_PX} px"


@pytest.fixture(scope="module")
def sample_batch(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "out"
    ms.score_batch(sample_data_dir(), out)
    return out


def test_sample_reports_fit_800_px_and_show_large_decoded_panels(sample_batch):
    pages = sorted(sample_batch.glob("*/report.html"))
    assert len(pages) == 7, "five cartoon-thigh samples, the child and one on real anatomy"
    layouts = _layouts(pages)
    for page in pages:
        _check(page, panels=6, layouts=layouts)  # three levels x (fat fraction, STIR or T2 map)


def test_t1w_only_report_shows_the_t1w_image_and_fits(tmp_path):
    study = phantom.make_study("imnm", seed=3, shape=(96, 96, 16), roles=("t1w",))
    folder = ms.score_study(study).save(tmp_path / "t1w-only")
    page = folder / "report.html"
    assert "T1-weighted" in page.read_text(encoding="utf-8")
    _check(page, panels=6)  # three levels x (semi-quantitative FF over T1w, T1w alone)


def test_batch_index_fits_800_px_and_its_images_decode(sample_batch):
    index = sample_batch / "index.html"
    layouts = _layouts([index])
    for width in (800, 1280):
        layout = layouts[index, width]
        assert layout["scroll"] <= width, f"index.html is {layout['scroll']} px wide"
        assert layout["images"] and all(i["decoded"] for i in layout["images"])
