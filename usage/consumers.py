"""Live request log: each organization's new calls, pushed to its members' open /usage pages."""

import asyncio
import contextlib
import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.template.loader import render_to_string

from orgs.models import Membership
from orgs.roles import role_has_scope

WATCH_SECONDS = 60  # an open page re-announces itself well within this


def org_group(organization_id: int) -> str:
    return f"usage.org.{organization_id}"


def _watch_key(organization_id: int) -> str:
    return f"usage:watched:{organization_id}"


class UsageLogConsumer(AsyncWebsocketConsumer):
    """Authenticated by the session cookie; a member may follow only an organization they can read."""

    async def connect(self):
        user = self.scope.get("user")
        query = dict(part.split("=", 1) for part in self.scope["query_string"].decode().split("&") if "=" in part)
        org_id = query.get("org", "")
        if not user or not user.is_authenticated or not org_id.isdigit() or not await self._may_read(user, org_id):
            await self.close(code=4403)
            return
        self.group = org_group(int(org_id))
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.announcer = asyncio.ensure_future(self._announce(int(org_id)))

    async def _announce(self, org_id: int) -> None:
        """Tell the metering flush (in any process) that someone is watching this organization."""
        while True:
            await cache.aset(_watch_key(org_id), 1, WATCH_SECONDS)
            await asyncio.sleep(WATCH_SECONDS / 3)

    async def disconnect(self, code):
        if hasattr(self, "announcer"):
            self.announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.announcer
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def usage_logs(self, event):
        for html in event["rows"]:
            await self.send(text_data=json.dumps({"html": html}))

    @database_sync_to_async
    def _may_read(self, user, org_id: str) -> bool:
        membership = Membership.objects.filter(user=user, organization_id=int(org_id),
                                               organization__deleted_at__isnull=True).first()
        return membership is not None and role_has_scope(membership.role, "usage:read")


_watched_seen: dict[int, tuple[float, bool]] = {}  # org → (checked at, watched); this process's view
WATCHED_VIEW_SECONDS = 1.0


def _watched(org_ids: set[int]) -> set[int]:
    """The organizations someone is watching, asking the cache at most once a second per organization."""
    now = time.monotonic()
    stale = [org_id for org_id in org_ids if now - _watched_seen.get(org_id, (-WATCHED_VIEW_SECONDS, False))[0]
             >= WATCHED_VIEW_SECONDS]
    if stale:
        found = cache.get_many([_watch_key(org_id) for org_id in stale])
        if len(_watched_seen) > 100_000:
            _watched_seen.clear()
        _watched_seen.update({org_id: (now, _watch_key(org_id) in found) for org_id in stale})
    return {org_id for org_id in org_ids if _watched_seen[org_id][1]}


def live_rows_render(records) -> list[tuple[str, dict]]:
    """Rows of just-written calls, for the organizations someone is watching, rendered from the records
    themselves (no read-back). Sync: it runs in the metering writer; a page opened starts receiving
    within a second."""
    watched = _watched({r.organization_id for r in records})
    by_org: dict[int, list[str]] = {}
    for record in sorted((r for r in records if r.organization_id in watched), key=lambda r: r.created_at,
                         reverse=True):  # newest first, as the log lists them
        by_org.setdefault(record.organization_id, []).append(
            render_to_string("usage/_log_row.html", {"log": _row(record), "fresh": True}))
    return [(org_group(org_id), {"type": "usage.logs", "rows": rows}) for org_id, rows in by_org.items()]


def _row(record) -> dict:
    """What the log row shows, named as on a RequestLog."""
    return {"request_id": record.request_id, "created_at": record.created_at, "endpoint": record.endpoint,
            "model": record.model, "status": record.status, "latency_ms": record.latency_ms,
            "input_tokens": record.usage.input, "output_tokens": record.usage.output, "cost": record.cost,
            "api_key": {"name": record.api_key_name} if record.api_key_id else None}


async def live_rows_send(messages: list[tuple[str, dict]]) -> None:
    layer = get_channel_layer()
    for group, message in messages:
        await layer.group_send(group, message)
