"""GPU deployments on the management API (/v1/deployments, also under /api/v1): developers and above
manage them, every member reads them (scopes gpu:write and gpu:read; an API key needs those scopes)."""

from rest_framework import serializers, status
from rest_framework.response import Response

from billing.money import micro_to_credits
from gpu.deployments import (
    DeploymentSettings,
    deployment_create,
    deployment_delete,
    deployment_health,
    deployment_price,
    deployment_update,
)
from gpu.models import Deployment, Job
from orgs.api.base import OrgScopedApi, client_ip
from orgs.services import OrgRuleError
from orgs.webhooks import webhook_url_clean


class GpuTypesField(serializers.ListField):
    """A list of GPU tiers, or the reference's comma-separated string of them."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.CharField(max_length=40), allow_empty=False, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value([t.strip() for t in data.split(",") if t.strip()]
                                         if isinstance(data, str) else data)


class DeploymentInput(serializers.Serializer):
    slug = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=120, required=False)
    dockerImage = serializers.CharField(max_length=300)
    gpuTypes = GpuTypesField()
    workersMin = serializers.IntegerField(required=False, default=0)
    workersMax = serializers.IntegerField(required=False, default=1)
    idleTimeout = serializers.IntegerField(required=False, default=5)
    maxSeconds = serializers.IntegerField(required=False, default=600)
    webhookUrl = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    env = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)
    envSecrets = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)

    def validate_webhookUrl(self, value):
        try:
            return webhook_url_clean(value) if value else ""
        except OrgRuleError as exc:
            raise serializers.ValidationError(str(exc)) from None


class DeploymentChanges(DeploymentInput):
    slug = None  # a deployment keeps its slug: its runs are called by it


FIELDS = {"name": "name", "dockerImage": "docker_image", "gpuTypes": "gpu_types", "workersMin": "workers_min",
          "workersMax": "workers_max", "idleTimeout": "idle_timeout", "maxSeconds": "max_seconds",
          "webhookUrl": "webhook_url", "env": "env", "envSecrets": "env_secrets"}


def deployment_output(deployment: Deployment, *, detail: bool = False) -> dict:
    out = {"slug": deployment.slug, "name": deployment.name, "dockerImage": deployment.docker_image,
           "gpuTypes": deployment.gpu_types, "workersMin": deployment.workers_min,
           "workersMax": deployment.workers_max, "idleTimeout": deployment.idle_timeout,
           "maxSeconds": deployment.max_seconds, "webhookUrl": deployment.webhook_url or None,
           "env": deployment.env, "envSecrets": sorted(deployment.env_secrets),  # names only, never values
           "status": deployment.status, "endpointId": deployment.endpoint_id,
           "creditsPerSecond": str(micro_to_credits(deployment_price(deployment))),
           "runUrl": f"/v1/gpu/run/{deployment.slug}", "createdAt": deployment.created_at}
    if detail:
        health = deployment_health(deployment)
        out["state"] = None if health is None else {
            "workers": {"idle": health.workers_idle, "running": health.workers_running},
            "jobs": {"inQueue": health.jobs_in_queue, "inProgress": health.jobs_in_progress,
                     "completed": health.jobs_completed, "failed": health.jobs_failed}}
        recent = deployment.jobs.order_by("-created_at")[:20]
        out["recentJobs"] = [{"jobId": job.public_id, "status": job.status, "executionMs": job.exec_ms,
                              "creditsCharged": None if job.charged is None else str(micro_to_credits(job.charged)),
                              "createdAt": job.created_at} for job in recent]
        spent = sum(job.charged or 0 for job in deployment.jobs.filter(status=Job.Status.SUCCEEDED))
        out["creditsSpent"] = str(micro_to_credits(spent))
    return out


def _settings(data: dict) -> dict:
    return {FIELDS[name]: value for name, value in data.items() if name in FIELDS}


class DeploymentApi(OrgScopedApi):
    model = Deployment

    def safely_get_queryset(self, queryset):
        return queryset.select_related("compute", "organization").order_by("slug")


class DeploymentListApi(DeploymentApi):
    scope_map = {"GET": "gpu:read", "POST": "gpu:write"}

    def get(self, request):
        return Response({"data": [deployment_output(d) for d in self.get_queryset()]})

    def post(self, request):
        data = DeploymentInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = _settings(data.validated_data)
        values.setdefault("name", data.validated_data["slug"])
        deployment = deployment_create(organization=self.organization, slug=data.validated_data["slug"],
                                       conf=DeploymentSettings(**values), actor=request.user,
                                       ip=client_ip(request))
        return Response(deployment_output(deployment), status=status.HTTP_201_CREATED)


class DeploymentDetailApi(DeploymentApi):
    scope_map = {"GET": "gpu:read", "PATCH": "gpu:write", "DELETE": "gpu:write"}

    def get(self, request, slug: str):
        return Response(deployment_output(self.get_object(slug=slug), detail=True))

    def patch(self, request, slug: str):
        deployment = self.get_object(slug=slug)
        data = DeploymentChanges(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        deployment = deployment_update(deployment=deployment, changes=_settings(data.validated_data),
                                       actor=request.user, ip=client_ip(request))
        return Response(deployment_output(deployment))

    def delete(self, request, slug: str):
        deployment_delete(deployment=self.get_object(slug=slug), actor=request.user, ip=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
