"""Evaluation reports for the console: the project's own (``docs/eval/``) and a ``rag eval matrix`` output
directory the server is pointed at (``RAG_REPORTS_DIR``). Only a report's own files are served, by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag_service.admin.access import Access, Principal
from rag_service.server.problems import NotFoundError

PROJECT_REPORTS = Path(__file__).resolve().parents[3] / "docs" / "eval"
FORMATS = {"html": "report.html", "md": "report.md", "json": "results.json"}


class ReportService:
    def __init__(self, extra: Path | None) -> None:
        self.roots = {"docs": PROJECT_REPORTS, **({"dir": extra} if extra is not None else {})}

    def _reports(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for key, root in self.roots.items():
            if not root.is_dir():
                continue
            candidates = [root] if (root / FORMATS["html"]).is_file() else sorted(p for p in root.iterdir())
            for folder in candidates:
                if folder.is_dir() and any((folder / f).is_file() for f in FORMATS.values()):
                    found[f"{key}/{folder.name}"] = folder
        return found

    def list(self, who: Principal) -> dict[str, Any]:
        Access.require_admin(who, "read evaluation reports")
        return {"reports": [{"id": rid, "title": folder.name,
                             "formats": [fmt for fmt, name in FORMATS.items() if (folder / name).is_file()]}
                            for rid, folder in self._reports().items()]}

    def file(self, who: Principal, report_id: str, fmt: str) -> Path:
        Access.require_admin(who, "read evaluation reports")
        folder = self._reports().get(report_id)
        if folder is None or fmt not in FORMATS or not (folder / FORMATS[fmt]).is_file():
            raise NotFoundError(f"no report '{report_id}' in format '{fmt}'")
        return folder / FORMATS[fmt]
