"""The report as text for the operator (one line per check) and as JSON for programs (the playbook)."""

from __future__ import annotations

import json
import socket
from typing import Any

from centralita.doctor.model import Report, Result, Status


def render_text(report: Report) -> str:
    """``FIXED`` lines first (what --fix changed), then one line per check, then the counts."""
    lines: list[str] = []
    for change in report.changes:
        for text in change.changes:
            lines.append(f"FIXED {change.check}: {text}")
        if change.error:
            lines.append(f"NOT FIXED {change.check}: {change.error}")
    width = max((len(result.name) for result in report.results), default=0)
    lines.extend(line(result, width) for result in report.results)
    lines.append(summary(report))
    return "\n".join(lines) + "\n"


def line(result: Result, width: int = 0) -> str:
    """``FAIL asterisk.files  <what was seen> | fix: <the fix>``; ``width`` pads the name to align columns."""
    text = f"{result.status.value:<4} {result.name:<{width}}  {_one_line(result.seen)}"
    return f"{text} | fix: {_one_line(result.fix)}" if result.fix else text


def _one_line(text: str) -> str:
    """Command output quoted in a result may span lines; the report keeps one line per check."""
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())


def summary(report: Report) -> str:
    counts = ", ".join(f"{report.count(status)} {status.value}" for status in Status)
    verdict = "problems found" if report.failed else "no failures"
    return f"{counts}: {verdict}"


def as_json(report: Report, env_file: str = "") -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "env_file": env_file,
        "ok": not report.failed,
        "summary": {status.value: report.count(status) for status in Status},
        "verdict": summary(report),
        "checks": [{**result.as_json(), "line": line(result)} for result in report.results],
        "fixes": [change.as_json() for change in report.changes],
    }


def render_json(report: Report, env_file: str = "") -> str:
    return json.dumps(as_json(report, env_file), indent=2, ensure_ascii=False) + "\n"
