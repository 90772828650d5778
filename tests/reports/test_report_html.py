"""The reports' HTML: navbar, figures with alt text and captions, human names with units, flags, links, DEMO."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from report_fixtures import build_reports


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    return build_reports(tmp_path_factory.mktemp("reports"))


class _Page(HTMLParser):
    """Collects visible text (outside <style>, <code>), links, images with their figure/caption context."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.nav_links: list[str] = []
        self.images: list[dict] = []
        self._stack: list[str] = []
        self._skip = 0
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag in ("style", "code", "script"):
            self._skip += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
            if "nav" in self._stack:
                self.nav_links.append(a["href"])
        if tag == "img":
            self.images.append({"src": a.get("src"), "alt": a.get("alt", ""), "in_figure": "figure" in self._stack,
                                "caption": ""})
        if tag == "figcaption":
            self._caption = []
        if tag not in ("img", "br", "meta"):
            self._stack.append(tag)

    def handle_endtag(self, tag):
        if tag in ("style", "code", "script"):
            self._skip -= 1
        if tag == "figcaption" and self._caption is not None and self.images:
            self.images[-1]["caption"] = "".join(self._caption).strip()
            self._caption = None
        if tag in self._stack:
            while self._stack and self._stack.pop() != tag:
                pass

    def handle_data(self, data):
        if self._caption is not None:
            self._caption.append(data)
        if not self._skip:
            self.text.append(data)


def parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


SNAKE = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")


@pytest.mark.parametrize("which", ["participant", "group"])
def test_navbar_points_at_sections(reports, which):
    page = parse(reports[which])
    assert len(page.nav_links) >= 4
    for href in page.nav_links:
        assert href.startswith("#") and href[1:] in page.ids, href


@pytest.mark.parametrize("which", ["participant", "group"])
def test_every_figure_has_alt_text_a_caption_and_a_file(reports, which):
    page = parse(reports[which])
    assert page.images
    for img in page.images:
        assert img["in_figure"], img
        assert len(img["alt"]) > 15, img
        assert len(img["caption"]) > 30, img
        assert (reports[which].parent / img["src"]).is_file(), img


@pytest.mark.parametrize("which", ["participant", "group"])
def test_no_key_syntax_in_visible_text(reports, which):
    text = " ".join(parse(reports[which]).text)
    assert not SNAKE.findall(text), sorted(set(SNAKE.findall(text)))
    assert "pearson" not in text.lower().replace("pearson r", "")


def test_participant_report_sections_units_and_flags(reports):
    page = parse(reports["participant"])
    text = " ".join(page.text)
    for section in ("summary", "anatomy", "conditioning", "qc", "methods", "about"):
        assert section in page.ids
    for unit in ("mm", "dB", "% of cortex", "unitless (0 to 1)"):  # fractions of the cortex are shown in percent
        assert unit in text, unit
    assert "Coverage of the thickness measure" in text and "81.0 %" in text
    assert "DEMO model." in text
    assert "⚑" in text and "Cortical ribbon overlap (Dice)" in text  # 0.62 < 0.8
    assert "T1w" in text and any("sub-01_T1w.nii.gz" in s for s in reports["participant"].read_text().split("<code>"))
    assert "References" in text and "arXiv:2601.19498" in text and "BBDM" in text
    assert any(href.endswith("crash-example.txt") for href in page.links)
    assert "Real T1w (native resolution)" not in text  # a kind without values gets no column


def test_group_report_links_participants_flags_outliers_and_says_demo(reports):
    page = parse(reports["group"])
    text = " ".join(page.text)
    assert "sub-01.html" in page.links
    assert (reports["group"].parent / "sub-01.html").is_file()
    assert any(h.endswith("group_desc-qc_summary.tsv") for h in page.links)
    assert "DEMO model." in text
    html = reports["group"].read_text()
    row = html[html.index("sub-02"):]
    row = row[: row.index("</tr>")]
    assert "⚑" in row  # SSIM 0.5 and r 0.2: flagged
    assert "1 of 6 flagged" in text


def test_reports_use_no_scripts_or_external_resources(reports):
    for which in ("participant", "group"):
        html = reports[which].read_text()
        assert "<script" not in html.lower()
        assert not re.search(r"(src|href)=['\"](https?:)?//", html)
    svg = next(reports["figures"].glob("*flicker*.svg")).read_text()
    assert "<script" not in svg and "@keyframes" in svg and svg.count("<image") == 2
