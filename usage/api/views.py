import csv
from datetime import date
from decimal import Decimal, InvalidOperation

from django.http import StreamingHttpResponse
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from billing.money import credits_to_micro, micro_to_credits
from orgs.api.base import OrgScopedApi
from usage.models import RequestLog
from usage.selectors import SORTS, LogFilters, Period, request_logs, top_expensive, usage_summary

MAX_DAYS, MAX_LIMIT = 366, 1000


def period_from(params) -> Period:
    """`days` (default 30) or a custom `from`/`to` (YYYY-MM-DD, UTC, inclusive)."""
    try:
        if params.get("from") or params.get("to"):
            period = Period(first=date.fromisoformat(params["from"]), last=date.fromisoformat(params["to"]))
        else:
            period = Period.last_days(int(params.get("days", 30)))
    except (KeyError, ValueError):
        raise ValidationError("Use days=N, or from=YYYY-MM-DD&to=YYYY-MM-DD.") from None
    if not 1 <= period.days <= MAX_DAYS:
        raise ValidationError(f"The period must be 1 to {MAX_DAYS} days.")
    return period


def _int(params, name) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValidationError({name: "A whole number."}) from None


def _credits(params, name) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return credits_to_micro(Decimal(value))
    except (InvalidOperation, ValueError):
        raise ValidationError({name: "An amount in credits."}) from None


def filters_from(params) -> LogFilters:
    status = params.get("status")
    return LogFilters(
        endpoint=params.get("endpoint") or None, model=params.get("model") or None,
        status=None if status in (None, "", "errors") else _int(params, "status"), errors_only=status == "errors",
        api_key_id=_int(params, "key"), min_latency_ms=_int(params, "minLatency"),
        max_latency_ms=_int(params, "maxLatency"), min_cost=_credits(params, "minCost"),
        max_cost=_credits(params, "maxCost"), request_id=params.get("requestId") or None)


def sort_from(params) -> str:
    sort = params.get("sort", "newest")
    if sort not in SORTS:
        raise ValidationError({"sort": f"One of {', '.join(SORTS)}."})
    return sort


def log_output(log: RequestLog, *, detail: bool = False) -> dict:
    out = {
        "requestId": log.request_id, "createdAt": log.created_at, "endpoint": log.endpoint, "model": log.model,
        "provider": log.provider, "status": log.status, "latencyMs": log.latency_ms, "ttftMs": log.ttft_ms,
        "inputTokens": log.input_tokens, "cachedTokens": log.cached_tokens, "cacheWriteTokens":
        log.cache_write_tokens, "outputTokens": log.output_tokens, "reasoningTokens": log.reasoning_tokens,
        "unit": log.unit or None, "units": log.units,
        "cost": str(micro_to_credits(log.cost)), "stream": log.stream, "errorType": log.error_type or None,
        "key": {"id": log.api_key_id, "name": log.api_key.name} if log.api_key_id else None,
    }
    if detail:
        out.update(upstreamModel=log.upstream_model, attempts=log.attempts,
                   uncollected=str(micro_to_credits(log.uncollected)))
    return out


class UsageApi(OrgScopedApi):
    """GET /api/api-usage?days=30&limit=1000 (+ the log filters) → logs, costByModel, topExpensiveRequests."""

    scope_map = {"GET": "usage:read"}

    def get(self, request):
        params = request.query_params
        period, filters, sort = period_from(params), filters_from(params), sort_from(params)
        limit = min(max(_int(params, "limit") or 100, 1), MAX_LIMIT)
        offset = max(_int(params, "offset") or 0, 0)
        org_id = self.organization.pk
        logs = list(request_logs(organization_id=org_id, period=period, filters=filters, sort=sort)
                    [offset:offset + limit + 1])
        summary = usage_summary(organization_id=org_id, period=period)
        return Response({
            "period": {"from": period.first, "to": period.last, "days": period.days},
            "totals": {**summary["totals"], "cost": str(micro_to_credits(summary["totals"]["cost"]))},
            "costByModel": [{"model": m["model"], "cost": str(micro_to_credits(m["cost"])),
                             "requests": m["requests"]} for m in summary["by_model"]],
            "dailyCost": [{"day": d["day"], "cost": str(micro_to_credits(d["cost"])), "requests": d["requests"],
                           "errors": d["errors"]} for d in summary["daily"]],
            "topExpensiveRequests": [log_output(log) for log in top_expensive(organization_id=org_id,
                                                                               period=period)],
            "logs": [log_output(log) for log in logs[:limit]],
            "nextOffset": offset + limit if len(logs) > limit else None,
        })


class UsageDetailApi(OrgScopedApi):
    scope_map = {"GET": "usage:read"}
    model = RequestLog

    def safely_get_queryset(self, queryset):
        return queryset.select_related("api_key")

    def get(self, request, request_id: str):
        return Response(log_output(self.get_object(request_id=request_id), detail=True))


CSV_COLUMNS = ["created_at", "request_id", "endpoint", "model", "provider", "upstream_model", "status",
               "latency_ms", "ttft_ms", "input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens",
               "reasoning_tokens", "unit", "units", "cost_credits", "stream", "api_key", "error_type"]


class _Echo:
    def write(self, value):
        return value


class UsageExportApi(OrgScopedApi):
    """GET /api/api-usage/export?days=30 → CSV, streamed row by row from the database."""

    scope_map = {"GET": "usage:read"}

    def get(self, request):
        params = request.query_params
        period, filters = period_from(params), filters_from(params)
        logs = request_logs(organization_id=self.organization.pk, period=period, filters=filters,
                            sort=sort_from(params))
        writer = csv.writer(_Echo())

        def rows():
            yield writer.writerow(CSV_COLUMNS)
            for log in logs.iterator(chunk_size=2000):
                yield writer.writerow([
                    log.created_at.isoformat(), log.request_id, log.endpoint, log.model, log.provider,
                    log.upstream_model, log.status, log.latency_ms, log.ttft_ms or "", log.input_tokens,
                    log.cached_tokens, log.cache_write_tokens, log.output_tokens, log.reasoning_tokens,
                    log.unit, log.units, micro_to_credits(log.cost), log.stream, log.api_key.name if log.api_key_id else "",
                    log.error_type])

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="hypereal-usage-{date.today().isoformat()}.csv"'
        return response
