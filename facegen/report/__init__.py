"""Dataset reports: ``report.png`` (target vs written-as-planned histograms; nothing measured) and ``preview.jpg`` (samples per emotion)."""

from facegen.report.plots import render_report, write_report
from facegen.report.preview import render_preview, write_preview

__all__ = ["render_preview", "render_report", "write_preview", "write_report"]
