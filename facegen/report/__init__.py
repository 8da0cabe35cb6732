"""Dataset reports: ``report.png`` (target / planned / measured-accepted per bin), ``preview.jpg``
(samples per emotion class), and the dataset card (``README.md`` + a self-contained ``report.html``)."""

from facegen.report.plots import render_report, write_report
from facegen.report.preview import render_preview, write_preview

__all__ = ["render_preview", "render_report", "write_preview", "write_report"]
