"""The dataset card: ``README.md`` (Hugging Face dataset-card YAML header + sections) and ``report.html``
beside the shards, written by ``facegen balance`` at finalize time.

    summary.update(write_dataset_card(root, summary, reports=True))

``write_dataset_card`` returns what summary.json gains: the card files added to ``reports``; a card that
cannot be drawn is recorded in ``report_errors`` (a warning, never a failed dataset), a full or read-only
disk is a one-line error.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import yaml

from facegen.errors import environment_error
from facegen.io.fs import Location
from facegen.report.card_data import SHARDS_GLOB, CardData, collect_card_data, size_category
from facegen.report.card_sections import Block, Bullets, Code, Image, Table, Text, build_sections
from facegen.report.html import HTML_NAME, render_html

log = logging.getLogger(__name__)

CARD_NAME = "README.md"
#: First line after the YAML header: marks a README.md as facegen's own (rewritten on every run).
CARD_MARK = "<!-- facegen dataset card: written by `facegen balance`, rewritten on every run -->"
TASK_CATEGORIES = ["image-classification", "image-feature-extraction"]
TAGS = ["synthetic", "faces", "facial-expression-recognition", "head-pose-estimation", "face-recognition",
        "webdataset", "facegen"]


def card_header(data: CardData) -> dict[str, Any]:
    """The YAML metadata Hugging Face reads: licence, task, size, tags and ``configs`` naming the shards."""
    licence, licence_name = data.licence
    header: dict[str, Any] = {"license": licence}
    if licence_name:
        header["license_name"] = licence_name
        header["license_link"] = CARD_NAME  # the weights table in this card says which terms apply
    header.update({
        "pretty_name": data.title,
        "task_categories": list(TASK_CATEGORIES),
        "size_categories": [size_category(data.samples)],
        "tags": list(TAGS),
        # one config only: `datasets` picks one builder (webdataset) for every config of a folder
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": SHARDS_GLOB}]}],
    })
    return header


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(block: Block) -> list[str]:
    if isinstance(block, Text):
        return [block.text, ""]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items] + [""]
    if isinstance(block, Table):
        lines = [f"**{block.caption}**", ""] if block.caption else []
        lines.append("| " + " | ".join(_cell(h) for h in block.headers) + " |")
        lines.append("|" + "---|" * len(block.headers))
        lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows)
        return lines + [""]
    if isinstance(block, Image):
        return [f"![{block.alt}]({block.name})", ""]
    if isinstance(block, Code):
        fence = ["```" + block.lang, block.text.rstrip("\n"), "```"]
        if block.summary:
            return ["<details>", f"<summary>{block.summary}</summary>", "", *fence, "", "</details>", ""]
        return fence + [""]
    raise TypeError(f"unknown card block {block!r}")


def render_card(data: CardData) -> str:
    """README.md text: YAML header, title, status line, then every section with an anchor of its id."""
    lines = ["---", yaml.safe_dump(card_header(data), sort_keys=False).rstrip("\n"), "---", CARD_MARK, "",
             f"# {data.title}", "",
             f"Labels: **{data.status}**. {data.samples} of {data.plan_rows} planned images; run "
             f"{'complete' if data.complete else 'INCOMPLETE'}. A self-contained version of this card with its "
             f"figures inlined: `{HTML_NAME}`.", ""]
    for section in build_sections(data):
        lines += [f'<a id="{section.id}"></a>', "", f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Image) and block.name not in data.images:
                lines += [f"*{block.name} was not drawn for this dataset (`--no-reports` or a drawing error).*", ""]
            else:
                lines += _markdown(block)
    return "\n".join(lines).rstrip("\n") + "\n"


def _foreign_readme(root: Location) -> bool:
    """True when DIR holds a README.md that facegen did not write (never overwritten)."""
    if not root.exists(CARD_NAME):
        return False
    return CARD_MARK.encode() not in root.read_bytes(CARD_NAME)[:4096]


def write_dataset_card(root: Location | str | os.PathLike[str], summary: dict[str, Any] | None = None, *,
                       reports: bool = True) -> dict[str, Any]:
    """Write README.md (always) and report.html (when `reports`) into the dataset folder `root`; return
    the summary.json entries they change (``reports``, ``report_errors``)."""
    root = root if isinstance(root, Location) else Location(root)
    summary = dict(summary or {})
    listed = [n for n in summary.get("reports") or [] if n not in (CARD_NAME, HTML_NAME)]  # re-added below when written
    errors = dict(summary.get("report_errors") or {})
    out: dict[str, Any] = {}
    try:
        data = collect_card_data(root, summary)
        if _foreign_readme(root):
            errors[CARD_NAME] = "DIR holds a README.md facegen did not write; left untouched (move it to get the card)"
        else:
            root.write_text_atomic(CARD_NAME, render_card(data))
            listed.append(CARD_NAME)
        if reports:
            root.write_text_atomic(HTML_NAME, render_html(data))
            listed.append(HTML_NAME)
        else:  # a stale page of an earlier run must not pass for this one's
            root.remove(HTML_NAME)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - the card is a view; the data stays complete
        env = environment_error(exc, root.url)
        if env is not None:
            raise env from None
        errors[CARD_NAME] = f"{type(exc).__name__}: {exc}"
        log.warning("the dataset card could not be written (%s); the dataset itself is unaffected", errors[CARD_NAME])
    out["reports"] = sorted(set(listed))
    out["report_errors"] = errors
    return out


__all__ = ["CARD_NAME", "HTML_NAME", "card_header", "render_card", "write_dataset_card"]
