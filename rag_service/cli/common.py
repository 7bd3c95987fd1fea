"""What every ``rag`` command module shares (``main`` and ``people`` import it; neither imports the other's
commands back, so the import graph stays a tree). Nothing heavy at import time: ``rag --help`` must stay fast."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag_service.admin.access import Principal
    from rag_service.workspace import Workspace


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def workspace(**overrides: Any) -> Workspace:
    """The data dir's workspace (settings from the environment and the config file, ``overrides`` on top)."""
    from rag_service.models.registry import force_offline
    from rag_service.settings import load_settings
    from rag_service.workspace import Workspace

    force_offline()
    return Workspace(load_settings(**{k: v for k, v in overrides.items() if v is not None}))


def operator() -> Principal:
    """Who a command acts as: the person at the terminal, an admin (``access.local_operator``, ``cli:<account>``)."""
    from rag_service.admin.access import local_operator

    return local_operator()


def audit(ws: Workspace, action: str, *, kb: str | None = None, target: str | None = None,
          detail: dict[str, Any] | None = None) -> None:
    """One event in the audit trail for a change the command made, naming ``cli:<account>`` as its actor."""
    from rag_service.admin.people import audit as record

    record(ws, operator(), action, kb=kb, target=target, detail=detail)
