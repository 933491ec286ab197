"""`resolver trace --svg/--html`: the lecture's picture of an iterated lookup, built from the
engine's events over the in-memory lab, and drawn by a real browser (headless Chromium)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from resolver.cli.trace_picture import (
    RESOLVER,
    STUB,
    ArrowKind,
    Picture,
    arrows_of,
    render_html,
    render_svg,
)
from resolver.dns import names
from resolver.dns.wire import Question, RRType
from tests.conftest import require_tool
from tests.support.png_pixels import read_png
from tests.unit.test_trace_render import first_seed, trace

ASK_BLUE = (0x1F, 0x5F, 0xBF)
FAILURE_RED = (0xC6, 0x28, 0x28)
BAND_YELLOW = (0xFF, 0xF6, 0xD5)


def picture_of(name: str) -> Picture:
    return arrows_of(trace(name).result.events, names.canonical(name), "A")


def test_picture_has_the_stub_the_resolver_and_each_server_asked_as_columns() -> None:
    picture = picture_of("www.networkutopia.com")
    keys = [column.key for column in picture.columns]
    assert keys[:2] == [STUB, RESOLVER]
    titles = [column.title for column in picture.columns[2:]]
    assert "dns1.networkutopia.com." in titles
    assert any(title.endswith("gtld-servers.net.") for title in titles)


def test_picture_arrows_are_numbered_in_order_from_the_stub_question_to_its_answer() -> None:
    picture = picture_of("www.networkutopia.com")
    arrows = picture.arrows
    assert [a.number for a in arrows] == list(range(1, len(arrows) + 1))
    assert (arrows[0].source, arrows[0].target, arrows[0].kind) == (STUB, RESOLVER, ArrowKind.ASK)
    assert (arrows[-1].source, arrows[-1].target) == (RESOLVER, STUB)
    assert arrows[-1].label == "A 212.212.212.2"
    labels = [a.label for a in arrows]
    assert "referral to com." in labels and "referral to networkutopia.com." in labels
    replies = [a for a in arrows if a.kind is ArrowKind.REPLY]
    assert replies and all(a.rtt_ms is not None for a in replies)


def test_picture_puts_the_glueless_lookup_on_a_nested_band() -> None:
    picture = picture_of("www.glueless.org")
    nested = [a for a in picture.arrows if a.band.startswith("lookup ns.hosting.net. A")]
    assert nested and all(a.depth == 1 for a in nested)
    assert nested[-1].label == "=> ns.hosting.net. 127.0.113.53"
    assert any("no glue for ns.hosting.net." in a.label for a in picture.arrows)
    priming = [a for a in picture.arrows if a.band == "root priming (. NS)"]
    assert [a.label for a in priming][:1] == [". NS?"]


def test_picture_of_a_cname_across_zones_shows_the_restart() -> None:
    picture = picture_of("www.ibm.com")
    labels = [a.label for a in picture.arrows]
    assert "CNAME servereast.backup2.ibm.com." in labels
    assert "restart at servereast.backup2.ibm.com." in labels
    assert picture.arrows[-1].label == "A 129.42.60.216"


def test_picture_marks_a_lame_server_as_a_failure() -> None:
    traced = first_seed(lambda t: "LAME" in t.text, "www.lame.test")
    picture = arrows_of(traced.result.events, "www.lame.test.", "A")
    failures = [a for a in picture.arrows if a.kind is ArrowKind.FAILURE]
    assert failures and failures[0].label.startswith("LAME")


def test_picture_marks_steps_taken_from_the_cache() -> None:
    traced = trace("www.networkutopia.com", more=(trace_question("mail.networkutopia.com"),))
    picture = arrows_of(traced.result.more_events[0], "mail.networkutopia.com.", "A")
    cached = [a for a in picture.arrows if a.kind is ArrowKind.CACHE]
    assert cached and cached[0].label.startswith("zone cut networkutopia.com. known from")


def trace_question(name: str) -> Question:
    return Question(names.canonical(name), RRType.A)


def test_svg_and_html_are_self_contained() -> None:
    picture = picture_of("www.glueless.org")
    for text in (render_svg(picture), render_html(picture)):
        assert "<script" not in text and "@import" not in text and "url(http" not in text
        assert not re.search(r'(href|src)="(?!#)', text)
    svg = render_svg(picture)
    assert svg.startswith("<svg ") and svg.count("<line ") >= len(picture.arrows)


def _label_boxes(svg: str) -> list[tuple[float, float, float, float, str]]:
    """(left, right, top, bottom, text) of each 11-pixel label, from its anchor and length.

    DejaVu Sans Mono advances 0.602 em a character: 6.62 pixels at 11 pixels.
    """
    boxes = []
    for x, y, anchor, text in re.findall(
            r'<text x="([\d.]+)" y="([\d.]+)" font-size="11" text-anchor="(start|end)"'
            r'[^>]*>([^<]*)</text>', svg):
        width = len(text.replace("&gt;", ">").replace("&amp;", "&")) * 6.62
        left = float(x) if anchor == "start" else float(x) - width
        boxes.append((left, left + width, float(y) - 10, float(y) + 2, text))
    return boxes


@pytest.mark.parametrize("name", ["www.glueless.org", "www.ibm.com", "www.networkutopia.com"])
def test_picture_labels_never_cover_a_step_number(name: str) -> None:
    """Short arrows (the resolver and the first root column) keep their numbers readable:
    a reply's label ends before its number, and an RTT that does not fit goes under the
    line."""
    svg = render_svg(picture_of(name))
    circles = [(float(x), float(y), float(r)) for x, y, r in
               re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="([\d.]+)"', svg)]
    boxes = _label_boxes(svg)
    assert len(boxes) >= 10
    for left, right, top, bottom, text in boxes:
        for cx, cy, r in circles:
            overlaps = left < cx + r and right > cx - r and top < cy + r and bottom > cy - r
            assert not overlaps, f"{text!r} covers the number at ({cx}, {cy})"
    assert any(text.endswith(" ms") and "answer" not in text for *_, text in boxes)


def test_picture_says_one_record_not_one_records() -> None:
    labels = [a.label for a in picture_of("www.networkutopia.com").arrows]
    assert "answer (AA, 1 record)" in labels and "answer (AA, 3 records)" in labels


def _screenshot(html: Path, png: Path, width: int, height: int) -> None:
    chromium = require_tool("chromium")
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", f"--window-size={width},{height}",
         f"--screenshot={png}", html.as_uri()],
        capture_output=True, timeout=90, check=True,
    )


@pytest.mark.parametrize("name", ["www.glueless.org", "www.lame.test"])
def test_picture_drawn_by_headless_chromium_shows_arrows_bands_and_failures(
    tmp_path: Path, name: str
) -> None:
    if name == "www.lame.test":
        traced = first_seed(lambda t: "LAME" in t.text, name)
        picture = arrows_of(traced.result.events, name + ".", "A")
    else:
        picture = picture_of(name)
    html = tmp_path / "trace.html"
    html.write_text(render_html(picture), encoding="utf-8")
    png = tmp_path / "trace.png"
    _screenshot(html, png, 1400, 900)
    image = read_png(png)
    assert (image.width, image.height) == (1400, 900)
    # Only the drawing counts, not the legend under it (which shows each colour too).
    drawing = int(re.search(r'height="(\d+)"', render_svg(picture)).group(1))  # type: ignore[union-attr]
    assert image.count(ASK_BLUE, rows=drawing) > 500  # the query arrows and their numbers
    assert image.count(BAND_YELLOW, rows=drawing) > 5000  # the nested band of root priming
    if name == "www.lame.test":
        assert image.count(FAILURE_RED, rows=drawing) > 100
    else:
        assert image.count(FAILURE_RED, rows=drawing) == 0
