"""People, keys, grants and the audit trail (README "Teams"). Users, keys and the trail are an admin's; a KB's
grants are its managers'. ``/me`` tells any caller who they are, so the console shows only what they may use."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from rag_service.admin.people import ACTIONS
from rag_service.server.deps import AppServices, Caller
from rag_service.server.schemas import (
    AuditList,
    GrantIn,
    GrantList,
    GrantOut,
    KeyCreated,
    KeyIn,
    KeyList,
    KeyOut,
    MeOut,
    UserIn,
    UserList,
    UserOut,
    UserPatch,
)

router = APIRouter()


@router.get("/me", response_model=MeOut, tags=["people"], summary="Who the key belongs to, and their role")
def me(who: Caller) -> dict[str, Any]:
    return who.to_json()


@router.get("/users", response_model=UserList, tags=["people"], summary="Every user (admins)")
def list_users(services: AppServices, who: Caller) -> dict[str, Any]:
    return services.people.users(who)


# exclude_unset: "keys" (how many work) belongs to the listing; a new or changed user's answer leaves it out.
@router.post("/users", status_code=201, response_model=UserOut, response_model_exclude_unset=True, tags=["people"],
             summary="Add a user (admins)")
def add_user(body: UserIn, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.people.add_user(who, body.name, body.role)


@router.patch("/users/{name}", response_model=UserOut, response_model_exclude_unset=True, tags=["people"],
              summary="Change a user's role, or disable (enable) them: their keys stop (resume) working (admins)")
def update_user(name: str, body: UserPatch, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.people.update_user(who, name, role=body.role, disabled=body.disabled)


@router.get("/keys", response_model=KeyList, tags=["people"], summary="API keys, without the keys themselves (admins)")
def list_keys(services: AppServices, who: Caller,
              user: Annotated[str | None, Query(description="only this user's")] = None) -> dict[str, Any]:
    return services.people.keys(who, user)


@router.post("/keys", status_code=201, response_model=KeyCreated, tags=["people"],
             summary="Create a key for a user: the answer is the only place the key is ever shown (admins)")
def create_key(body: KeyIn, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.people.create_key(who, body.user, body.expires_days)


@router.delete("/keys/{key_id}", response_model=KeyOut, tags=["people"],
               summary="Revoke a key: refused from its next request on, on every replica (admins)")
def revoke_key(key_id: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.people.revoke_key(who, key_id)


@router.get("/kbs/{kb}/grants", response_model=GrantList, tags=["people"],
            summary="Who may read, write or manage a knowledge base (its managers)")
def list_grants(kb: str, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.people.grants(who, kb)


@router.post("/kbs/{kb}/grants", response_model=GrantOut, tags=["people"],
             summary="Grant a user read, write or manage on a knowledge base, replacing what they had (its managers)")
def add_grant(kb: str, body: GrantIn, services: AppServices, who: Caller) -> dict[str, Any]:
    return services.people.grant(who, kb, body.user, body.level)


@router.delete("/kbs/{kb}/grants/{user}", status_code=204, tags=["people"],
               summary="Take a user's access to a knowledge base away (its managers)")
def remove_grant(kb: str, user: str, services: AppServices, who: Caller) -> Response:
    services.people.revoke_grant(who, kb, user)
    return Response(status_code=204)


@router.get("/audit", response_model=AuditList, tags=["people"],
            summary="The audit trail, newest first: who created or deleted a KB, uploaded, replaced or deleted a "
            "document, changed a glossary, granted access, made or revoked a key (admins)")
def audit(services: AppServices, who: Caller,
          kb: Annotated[str | None, Query(description="a knowledge base name")] = None,
          user: Annotated[str | None, Query(description="the actor: a user, 'operator' or 'cli:<account>'")] = None,
          action: Annotated[str | None, Query(description=f"one of {', '.join(ACTIONS)}, or a family ('kb')")] = None,
          since: Annotated[str | None, Query(description="an ISO date or time (UTC unless it says)")] = None,
          limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
    return services.people.audit(who, kb=kb, actor=user, action=action, since=since, limit=limit)
