"""GPU and jobs pages of the dashboard: the organization's jobs (each with its outputs and timeline), the
hosted GPU models, and the organization's deployments."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from billing.money import micro_to_credits
from gpu.deployments import (
    GPU_TIER_CREDITS_PER_SECOND,
    DeploymentSettings,
    deployment_create,
    deployment_delete,
    deployment_health,
    deployment_price,
)
from gpu.models import Deployment, GpuModel, Job
from gpu.storage import stored_file_get, stored_file_url
from orgs.api.base import client_ip
from orgs.pages import org_page, page_context
from orgs.roles import role_has_scope
from orgs.services import OrgRuleError
from orgs.webhooks import webhook_url_clean


@org_page("usage:read")
def jobs_page(request):
    jobs = Job.objects.filter(organization=request.membership.organization).order_by("-created_at")[:100]
    return render(request, "gpu/jobs.html", page_context(request, "jobs", jobs=jobs))


@org_page("usage:read")
def job_page(request, job_id: str):
    organization = request.membership.organization
    job = get_object_or_404(Job.objects.select_related("provider", "compute", "hold"), organization=organization,
                            public_id=job_id)
    outputs = []
    for output in job.output.get("files", []):
        if file := stored_file_get(organization_id=organization.pk, file_id=output["id"]):
            outputs.append((file, stored_file_url(file)[0]))
    return render(request, "gpu/job.html", page_context(
        request, "jobs", job=job, outputs=outputs, events=job.events.order_by("created_at", "pk")))


@org_page("gpu:read")
def gpu_models_page(request):
    """The hosted GPU models: what each runs on, what it costs, how long it may run, how to call it."""
    models = GpuModel.objects.filter(enabled=True, compute__enabled=True).order_by("slug")
    return render(request, "gpu/gpu_models.html", page_context(request, "gpu", models=models))


def _deployment_settings(post) -> DeploymentSettings:
    def number(name: str, default: int) -> int:
        value = post.get(name, "").strip()
        if not value.isdigit():
            if value:
                raise OrgRuleError(f"{name.replace('_', ' ').capitalize()} must be a whole number.", 400)
            return default
        return int(value)

    return DeploymentSettings(
        name=post.get("name", "").strip() or post.get("slug", "").strip(), docker_image=post.get("docker_image", "").strip(),
        gpu_types=post.getlist("gpu_types"), workers_min=number("workers_min", 0), workers_max=number("workers_max", 1),
        idle_timeout=number("idle_timeout", 5), max_seconds=number("max_seconds", 600),
        webhook_url=webhook_url_clean(url) if (url := post.get("webhook_url", "").strip()) else "")


@org_page("gpu:read")
def deployments_page(request):
    """/infra/deployments: the organization's deployments, and (for developers and above) a new one."""
    membership = request.membership
    can_write = role_has_scope(membership.role, "gpu:write")
    if request.method == "POST":
        if not can_write:
            return HttpResponse("Your role cannot create deployments.", status=403)
        slug = request.POST.get("slug", "").strip()
        try:
            deployment_create(organization=membership.organization, slug=slug,
                              conf=_deployment_settings(request.POST), actor=request.user, ip=client_ip(request))
        except OrgRuleError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Deployment {slug} is live: POST /v1/gpu/run/{slug} runs it.")
            return redirect(f"/infra/deployments/{slug}")
    deployments = Deployment.objects.filter(organization=membership.organization).order_by("slug")
    return render(request, "gpu/deployments.html", page_context(
        request, "deployments", deployments=[(d, micro_to_credits(deployment_price(d))) for d in deployments],
        can_write=can_write, tiers=GPU_TIER_CREDITS_PER_SECOND, form=request.POST))


@org_page("gpu:read")
def deployment_page(request, slug: str):
    membership = request.membership
    deployment = get_object_or_404(Deployment.objects.select_related("compute"),
                                   organization=membership.organization, slug=slug)
    can_write = role_has_scope(membership.role, "gpu:write")
    if request.method == "POST":
        if not can_write:
            return HttpResponse("Your role cannot change deployments.", status=403)
        try:
            deployment_delete(deployment=deployment, actor=request.user, ip=client_ip(request))
        except OrgRuleError as exc:
            messages.error(request, str(exc))
            return redirect(request.path)
        messages.success(request, f"Deployment {slug} deleted.")
        return redirect("/infra/deployments")
    jobs = deployment.jobs.order_by("-created_at")[:50]
    spent = sum(job.charged or 0 for job in deployment.jobs.filter(status=Job.Status.SUCCEEDED))
    return render(request, "gpu/deployment.html", page_context(
        request, "deployments", deployment=deployment, jobs=jobs, health=deployment_health(deployment),
        spent=spent, price=micro_to_credits(deployment_price(deployment)), can_write=can_write))
