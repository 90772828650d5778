"""HTML building blocks shared by the participant and group reports: one offline page (no scripts, no external
resources), a fixed navbar, sections, figures with alt text and captions, tables that fit 1100 px."""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FigureEntry", "esc", "page", "section", "figure", "table", "code", "link", "demo_notice"]

STYLE = """
*{box-sizing:border-box}
html{scroll-padding-top:3.6em}
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;
line-height:1.5;background:#fff}
nav{position:sticky;top:0;z-index:10;background:#24313f;padding:0 1em;display:flex;flex-wrap:wrap;align-items:center}
nav .brand{color:#fff;font-weight:600;margin-right:1.2em;padding:.6em 0}
nav a{color:#d7e3f0;text-decoration:none;padding:.6em .75em;font-size:.95em}
nav a:hover{background:#34475c;color:#fff}
main{max-width:1100px;margin:0 auto;padding:0 1em 3em}
h1{font-size:1.55em;margin:.8em 0 .2em} h2{font-size:1.3em;border-bottom:2px solid #e3e7ec;padding-bottom:.2em;
margin-top:1.8em} h3{font-size:1.05em;margin:1.4em 0 .4em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0;max-width:100%}
td,th{border:1px solid #dde2e7;padding:.3em .6em;vertical-align:top;text-align:left}
th{background:#f2f5f8;font-weight:600} td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
table.kv td:first-child{width:14em}
.wide{width:100%}
.scroll{overflow-x:auto;max-width:100%}
.demo{background:#fff4ce;border:1px solid #e3c45b;padding:.7em 1em;border-radius:6px;margin:1em 0}
.warn{background:#fdecea;border:1px solid #e6a39b;padding:.6em 1em;border-radius:6px}
.flag{color:#b3261e;font-weight:600;white-space:nowrap} .ok{color:#2e7d32;white-space:nowrap}
.muted{color:#5f6b76;font-size:.88em}
figure{margin:1.2em 0} figure img{max-width:100%;height:auto;border:1px solid #e6e9ec;display:block}
figcaption{font-size:.9em;color:#47525c;margin-top:.35em}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.88em;background:#f3f4f6;padding:0 .25em;
border-radius:3px;overflow-wrap:anywhere}
details{margin:.6em 0} summary{cursor:pointer;color:#24508a}
pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8em;background:#f3f4f6;padding:.6em;
white-space:pre-wrap;overflow-wrap:anywhere}
.methods{background:#f7f9fb;border-left:4px solid #8aa4c0;padding:.6em 1em}
ol.refs{font-size:.9em}
footer{margin-top:3em;font-size:.85em;color:#5f6b76}
"""


@dataclass(frozen=True)
class FigureEntry:
    """A figure of a report: the file, the section it belongs to, alt text and caption (both required)."""

    path: Path
    section: str
    alt: str
    caption: str
    width: int | None = None
    height: int | None = None


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def code(text: object) -> str:
    """File names and keys: in ``<code>`` (the only place key syntax may appear in visible text)."""
    return f"<code>{esc(text)}</code>"


def rel(target: Path, page_path: Path) -> str:
    """``target`` relative to the folder of ``page_path`` (POSIX separators), for links and images."""
    return Path(os.path.relpath(Path(target), Path(page_path).parent)).as_posix()


def link(target: Path, page_path: Path, text: str | None = None) -> str:
    r = rel(target, page_path)
    return f"<a href='{esc(r)}'>{esc(text) if text is not None else code(Path(r).name)}</a>"


def figure(entry: FigureEntry, page_path: Path) -> str:
    size = ""
    if entry.width and entry.height:
        size = f" width='{entry.width}' height='{entry.height}'"
    return (f"<figure><img src='{esc(rel(entry.path, page_path))}' alt='{esc(entry.alt)}'{size} loading='eager'>"
            f"<figcaption>{entry.caption}</figcaption></figure>")


def table(header: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Sequence[bool] | None = None,
          css: str = "") -> str:
    """A table of already-escaped cells; ``numeric`` columns are right-aligned."""
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='num'>{c}</td>" if numeric[i] else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    cls = f" class='{css}'" if css else ""
    return f"<div class='scroll'><table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def section(anchor: str, title: str, body: str) -> str:
    return f"<section id='{esc(anchor)}'><h2>{esc(title)}</h2>{body}</section>"


def demo_notice(text: str) -> str:
    return f"<div class='demo' role='note'><b>DEMO model.</b> {text}</div>"


def page(title: str, brand: str, nav: Sequence[tuple[str, str]], body: str, footer: str) -> str:
    """A whole page: navbar (``[(anchor, label)]``), ``<main>`` with ``body``, footer."""
    links = "".join(f"<a href='#{esc(a)}'>{esc(label)}</a>" for a, label in nav)
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<nav aria-label='Sections'><span class='brand'>{esc(brand)}</span>{links}</nav>"
            f"<main>{body}<footer>{footer}</footer></main></body></html>\n")
