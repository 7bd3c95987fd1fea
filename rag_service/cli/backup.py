"""``rag backup DIR`` and ``rag restore DIR``: a whole embedded instance, copied while the server runs and checked when
restored (``rag_service.admin.backup``). ``--json`` prints ``{"path", "created", "kbs": [{"id", "name", "documents",
"chunks", "vectors", "probe_query", "probe_hits"}]}``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rag_service.cli.common import print_json, workspace


def _summary(verb: str, result: Any) -> None:
    kbs = result.kbs
    print(f"{verb} {len(kbs)} knowledge base{'s' if len(kbs) != 1 else ''} "
          f"({sum(k.documents for k in kbs)} documents, {sum(k.chunks for k in kbs)} chunks, "
          f"{sum(k.vectors for k in kbs)} vectors), with sessions, feedback, jobs, people and the audit trail")


def cmd_backup(args: argparse.Namespace) -> int:
    from rag_service.admin.backup import backup

    result = backup(workspace(), Path(args.dir))
    if args.json:
        print_json(result.to_json())
    else:
        _summary(f"backed up into {args.dir}:", result)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from rag_service.admin.backup import restore
    from rag_service.settings import load_settings

    result = restore(load_settings(), Path(args.dir))
    if args.json:
        print_json(result.to_json())
    else:
        _summary(f"restored from {args.dir} (backup of {result.created}) and checked:", result)
    return 0


def add_backup_parsers(sub: Any) -> None:
    s = sub.add_parser("backup", help="copy the whole embedded instance into DIR while the server runs")
    s.add_argument("dir", help="a new or empty directory")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_backup)
    s = sub.add_parser("restore", help="restore a `rag backup` into an empty data dir (server stopped) and check it")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_restore)
