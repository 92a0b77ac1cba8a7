"""The /usage dashboard: totals, charts, the most expensive calls and a searchable, live request log."""

from urllib.parse import urlencode

from django.shortcuts import get_object_or_404, render
from rest_framework.exceptions import ValidationError

from apikeys.models import ApiKey
from billing.money import micro_to_credits
from orgs.pages import org_page, page_context
from usage.api.views import filters_from, period_from, sort_from
from usage.models import RequestLog
from usage.selectors import request_logs, top_expensive, usage_models, usage_summary

PAGE_SIZE = 50
FILTER_NAMES = ("days", "from", "to", "endpoint", "model", "status", "key", "minLatency", "maxLatency",
                "minCost", "maxCost", "requestId", "sort")


def _query(request) -> dict:
    return {k: v for k in FILTER_NAMES if (v := request.GET.get(k, "").strip())}


def _log_page(request) -> dict:
    params = _query(request)
    try:
        period, filters, sort = period_from(params), filters_from(params), sort_from(params)
    except ValidationError as exc:
        return {"error": exc.detail, "logs": [], "params": params}
    offset = max(int(request.GET.get("offset") or 0), 0)
    logs = list(request_logs(organization_id=request.membership.organization_id, period=period, filters=filters,
                             sort=sort)[offset:offset + PAGE_SIZE + 1])
    return {"logs": logs[:PAGE_SIZE], "params": params, "period": period, "sort": sort, "offset": offset,
            "next_offset": offset + PAGE_SIZE if len(logs) > PAGE_SIZE else None,
            "prev_offset": max(offset - PAGE_SIZE, 0) if offset else None,
            "query": urlencode(params), "live": offset == 0 and sort == "newest"}


@org_page("usage:read")
def usage_page(request):
    params = _query(request)
    try:
        period = period_from(params)
    except ValidationError:
        period = period_from({})
    org_id = request.membership.organization_id
    summary = usage_summary(organization_id=org_id, period=period)
    spent = [m for m in summary["by_model"] if m["cost"]]  # a spend chart: what cost nothing has no slice
    charts = {
        "byModel": {"labels": [m["model"] for m in spent],
                    "costs": [float(micro_to_credits(m["cost"])) for m in spent]},
        "daily": {"labels": [d["day"].isoformat() for d in summary["daily"]],
                  "costs": [float(micro_to_credits(d["cost"])) for d in summary["daily"]],
                  "requests": [d["requests"] for d in summary["daily"]]},
    }
    return render(request, "usage/usage.html", page_context(request, "usage", **{
        **_log_page(request), "summary": summary, "charts": charts, "period": period,
        "days": params.get("days", "30"), "top": top_expensive(organization_id=org_id, period=period),
        "models": usage_models(organization_id=org_id),
        "keys": ApiKey.objects.filter(organization_id=org_id).order_by("name")}))


@org_page("usage:read")
def usage_logs(request):
    """The log table alone, for HTMX: filters, sorting and pages swap it in place."""
    return render(request, "usage/_logs.html", _log_page(request))


@org_page("usage:read")
def usage_request(request, request_id: str):
    log = get_object_or_404(RequestLog.objects.select_related("api_key"), request_id=request_id,
                            organization_id=request.membership.organization_id)
    return render(request, "usage/_request.html", {"log": log})


