"""People, keys, grants and the audit trail over REST: the same use cases as ``rag users|keys|grants|audit``
(``rag_service.admin.people``), each as the calling key's owner."""

from __future__ import annotations

from typing import Any

from rag_service.admin import people
from rag_service.admin.access import Principal
from rag_service.server.workspaces import Workspaces


class PeopleService:
    def __init__(self, workspaces: Workspaces) -> None:
        self.workspaces = workspaces

    def users(self, who: Principal) -> dict[str, Any]:
        return {"users": people.users(self.workspaces.current(), who)}

    def add_user(self, who: Principal, name: str, role: str) -> dict[str, Any]:
        return people.add_user(self.workspaces.current(), who, name, role).to_json()

    def update_user(self, who: Principal, name: str, *, role: str | None, disabled: bool | None) -> dict[str, Any]:
        return people.update_user(self.workspaces.current(), who, name, role=role, disabled=disabled).to_json()

    def keys(self, who: Principal, user: str | None) -> dict[str, Any]:
        return {"keys": [k.to_json() for k in people.keys(self.workspaces.current(), who, user)]}

    def create_key(self, who: Principal, user: str, expires_days: float | None) -> dict[str, Any]:
        return people.create_key(self.workspaces.current(), who, user, expires_days)

    def revoke_key(self, who: Principal, key_id: str) -> dict[str, Any]:
        return people.revoke_key(self.workspaces.current(), who, key_id).to_json()

    def grants(self, who: Principal, kb: str) -> dict[str, Any]:
        return {"grants": people.grants(self.workspaces.current(), who, kb)}

    def grant(self, who: Principal, kb: str, user: str, level: str) -> dict[str, Any]:
        return people.grant(self.workspaces.current(), who, kb, user, level)

    def revoke_grant(self, who: Principal, kb: str, user: str) -> None:
        people.revoke_grant(self.workspaces.current(), who, kb, user)

    def audit(self, who: Principal, **filters: Any) -> dict[str, Any]:
        return {"events": [e.to_json() for e in people.events(self.workspaces.current(), who, **filters)]}
