"""The data-quality report: ``python cli.py report --data-dir DIR``."""

from recorder.report.quality import Gap, PairQuality, Report, SessionQuality, build_report

__all__ = ["Gap", "PairQuality", "Report", "SessionQuality", "build_report"]
