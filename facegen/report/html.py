"""``report.html``: the dataset card's sections as one self-contained page (images inlined as base64,
no external URL, no script), one ``<section id=...>`` per card section."""

from __future__ import annotations

import base64
import html
import re

from facegen.report.card_data import CardData
from facegen.report.card_sections import Block, Bullets, Code, Image, Table, Text, build_sections

HTML_NAME = "report.html"
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; background: #fff; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #bbb; padding: .25em .6em; text-align: left; }
th { background: #e8eef6; } caption { text-align: left; font-weight: bold; padding: .3em 0; }
code, pre { background: #f3f3f3; } pre { padding: .6em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #ddd; } nav a { margin-right: 1em; }
.status { padding: .5em .8em; background: #fff6d5; border-left: 4px solid #e0b000; }
"""


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _image(block: Image, images: dict[str, bytes]) -> str:
    data = images.get(block.name)
    if data is None:
        return f"<p><em>{html.escape(block.name)} was not drawn for this dataset.</em></p>"
    mime = _MIME.get(block.name[block.name.rfind("."):].lower(), "application/octet-stream")
    encoded = base64.b64encode(data).decode("ascii")
    return f'<figure><img src="data:{mime};base64,{encoded}" alt="{html.escape(block.alt)}"></figure>'


def _block(block: Block, images: dict[str, bytes]) -> str:
    if isinstance(block, Text):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        caption = f"<caption>{_inline(block.caption)}</caption>" if block.caption else ""
        head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
        rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(block, Image):
        return _image(block, images)
    if isinstance(block, Code):
        pre = f"<pre><code>{html.escape(block.text)}</code></pre>"
        return f"<details><summary>{_inline(block.summary)}</summary>{pre}</details>" if block.summary else pre
    raise TypeError(f"unknown card block {block!r}")


def render_html(data: CardData) -> str:
    """The whole page as a string."""
    sections = build_sections(data)
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>' + "".join(_block(b, data.images) for b in s.blocks) + "</section>"
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(data.title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(data.title)}</h1><p class=\"status\">labels: {html.escape(data.status)}; "
        f"{data.samples} of {data.plan_rows} planned images; run {'complete' if data.complete else 'INCOMPLETE'}</p>"
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )


__all__ = ["HTML_NAME", "render_html"]
