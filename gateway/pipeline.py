"""What every gateway call shares: request id, timing, error responses and the metering record."""

import os
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from gateway.errors import GatewayError, openai_error_body
from gateway.http import Send, send_json
from gateway.metering import meter
from gateway.usage import Usage
from usage.services import CallRecord


@dataclass(slots=True)
class Call:
    endpoint: str
    request_id: str = field(default_factory=lambda: "req_" + os.urandom(12).hex())
    started: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=timezone.now)
    ttft_ms: int | None = None

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = self.elapsed_ms()

    def record(self, *, org_id: int, key_id: int | None, model: str, status: int, usage: Usage = Usage(),
               cost: int = 0, provider: str = "", upstream_model: str = "", stream: bool = False,
               error_type: str = "") -> None:
        meter.record(CallRecord(
            request_id=self.request_id, organization_id=org_id, api_key_id=key_id, endpoint=self.endpoint,
            model=model, provider=provider, upstream_model=upstream_model, status=status,
            latency_ms=self.elapsed_ms(), usage=usage, cost=cost, created_at=self.created_at, stream=stream,
            ttft_ms=self.ttft_ms, error_type=error_type,
        ))

    async def send_openai_error(self, send: Send, err: GatewayError) -> None:
        await send_json(send, err.status, openai_error_body(err), {"x-request-id": self.request_id, **err.headers})
