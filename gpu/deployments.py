"""An organization's GPU deployments: each one an endpoint on a compute provider, running its image.

Every write is audited (secrets by name only). The provider is changed first and the row after, so a
provider that refuses leaves nothing half-made: a create whose row cannot be saved removes the endpoint
it made again.
"""

import logging
import re
from dataclasses import dataclass, replace
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from billing.money import credits_to_micro
from gpu.compute import DRIVERS, ComputeTarget, Endpoint, EndpointHealth, EndpointSpec
from gpu.models import ComputeProvider, Deployment
from gpu.upstreams import UpstreamError
from orgs.events import AuditAction
from orgs.services import OrgRuleError, audit_record

log = logging.getLogger(__name__)
# The dearest GPU tier a deployment may land on prices its runs (RunPod's flex per-second prices, in
# credits: 100 credits = 1 USD); a tier not listed is priced as the dearest.
GPU_TIER_CREDITS_PER_SECOND = {"AMPERE_16": "0.016", "AMPERE_24": "0.019", "ADA_24": "0.031",
                               "AMPERE_48": "0.034", "ADA_48_PRO": "0.053", "AMPERE_80": "0.076",
                               "ADA_80_PRO": "0.116", "HOPPER_141": "0.155"}
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
# What a deployment's own settings may be: RunPod's ranges.
WORKERS_MAX, IDLE_TIMEOUT_MAX, MAX_SECONDS_MAX = 10, 3600, 24 * 3600


@dataclass(frozen=True, slots=True)
class DeploymentSettings:
    name: str
    docker_image: str
    gpu_types: list[str]
    workers_min: int = 0
    workers_max: int = 1
    idle_timeout: int = 5
    max_seconds: int = 600
    webhook_url: str = ""
    env: dict | None = None
    env_secrets: dict | None = None


def compute_for_deployments() -> ComputeProvider:
    """The compute provider new deployments go to (HYPEREAL_DEPLOYMENT_COMPUTE, else the first enabled)."""
    providers = ComputeProvider.objects.filter(enabled=True)
    if name := settings.HYPEREAL["DEPLOYMENT_COMPUTE"]:
        providers = providers.filter(name=name)
    provider = providers.order_by("pk").first()
    if provider is None:
        raise OrgRuleError("No compute provider is configured for deployments (Django admin → Compute "
                           "providers).", 503)
    return provider


def compute_target(compute: ComputeProvider) -> ComputeTarget:
    return ComputeTarget(queue_url=compute.queue_url.rstrip("/"), rest_url=compute.rest_url.rstrip("/"),
                         api_key=compute.api_key)


def _spec(organization, slug: str, conf: DeploymentSettings) -> EndpointSpec:
    return EndpointSpec(name=f"hypereal-{organization.slug}-{slug}"[:63], image=conf.docker_image,
                        gpu_types=conf.gpu_types, workers_min=conf.workers_min, workers_max=conf.workers_max,
                        idle_timeout=conf.idle_timeout, execution_timeout_ms=conf.max_seconds * 1000,
                        env={**(conf.env or {}), **(conf.env_secrets or {})})


def _checked(conf: DeploymentSettings) -> DeploymentSettings:
    if not 0 <= conf.workers_min <= conf.workers_max <= WORKERS_MAX:
        raise OrgRuleError(f"Workers: 0 ≤ min ≤ max ≤ {WORKERS_MAX}.", 400)
    if not 1 <= conf.idle_timeout <= IDLE_TIMEOUT_MAX:
        raise OrgRuleError(f"The idle timeout is 1 to {IDLE_TIMEOUT_MAX} seconds.", 400)
    if not 5 <= conf.max_seconds <= MAX_SECONDS_MAX:
        raise OrgRuleError(f"The longest run is 5 to {MAX_SECONDS_MAX} seconds.", 400)
    if not conf.gpu_types:
        raise OrgRuleError("Name at least one GPU type.", 400)
    return conf


def _public_state(deployment: Deployment) -> dict:
    """What the audit log keeps: never a secret's value."""
    return {"slug": deployment.slug, "name": deployment.name, "dockerImage": deployment.docker_image,
            "gpuTypes": deployment.gpu_types, "workersMin": deployment.workers_min,
            "workersMax": deployment.workers_max, "idleTimeout": deployment.idle_timeout,
            "maxSeconds": deployment.max_seconds, "webhookUrl": deployment.webhook_url,
            "env": sorted(deployment.env), "envSecrets": sorted(deployment.env_secrets)}


def deployment_create(*, organization, slug: str, conf: DeploymentSettings, actor, ip: str | None = None,
                      compute: ComputeProvider | None = None) -> Deployment:
    if not SLUG.fullmatch(slug):
        raise OrgRuleError("A slug is lowercase letters, digits and dashes (at most 64).", 400)
    if Deployment.objects.filter(organization=organization, slug=slug).exists():
        raise OrgRuleError(f"A deployment named {slug} exists already.", 409)
    compute = compute or compute_for_deployments()
    conf = _checked(conf)
    try:
        endpoint = DRIVERS[compute.kind].endpoint_create(compute_target(compute), _spec(organization, slug, conf))
    except UpstreamError as exc:
        raise OrgRuleError(f"The compute provider refused the deployment: {exc}.", 502) from None
    try:
        with transaction.atomic():
            deployment = Deployment(organization=organization, slug=slug, name=conf.name,
                                    docker_image=conf.docker_image, gpu_types=conf.gpu_types,
                                    workers_min=conf.workers_min, workers_max=conf.workers_max,
                                    idle_timeout=conf.idle_timeout, max_seconds=conf.max_seconds,
                                    webhook_url=conf.webhook_url, env=conf.env or {}, compute=compute,
                                    endpoint_id=endpoint.endpoint_id, template_id=endpoint.template_id,
                                    created_by=actor)
            deployment.env_secrets = conf.env_secrets or {}
            deployment.save()
            audit_record(organization=organization, action=AuditAction.DEPLOYMENT_CREATE, target=deployment,
                         actor=actor, ip=ip, after=_public_state(deployment))
    except BaseException:
        DRIVERS[compute.kind].endpoint_delete(compute_target(compute), endpoint)  # nothing left half-made
        raise
    return deployment


def deployment_update(*, deployment: Deployment, changes: dict, actor, ip: str | None = None) -> Deployment:
    """Change what ``changes`` names (the DeploymentSettings fields); a new image or environment gets a new
    template the endpoint switches to."""
    before = _public_state(deployment)
    current = DeploymentSettings(name=deployment.name, docker_image=deployment.docker_image,
                                 gpu_types=deployment.gpu_types, workers_min=deployment.workers_min,
                                 workers_max=deployment.workers_max, idle_timeout=deployment.idle_timeout,
                                 max_seconds=deployment.max_seconds, webhook_url=deployment.webhook_url,
                                 env=deployment.env, env_secrets=deployment.env_secrets)
    conf = _checked(replace(current, **changes))
    driver, target = DRIVERS[deployment.compute.kind], compute_target(deployment.compute)
    spec = _spec(deployment.organization, deployment.slug, conf)
    try:
        if conf.docker_image != current.docker_image or conf.env != current.env or \
                conf.env_secrets != current.env_secrets:
            old = Endpoint(deployment.endpoint_id, deployment.template_id)
            deployment.template_id = driver.template_switch(target, old, spec)
        driver.endpoint_update(target, deployment.endpoint_id, spec)
    except UpstreamError as exc:
        raise OrgRuleError(f"The compute provider refused the change: {exc}.", 502) from None
    with transaction.atomic():
        for field in ("name", "docker_image", "gpu_types", "workers_min", "workers_max", "idle_timeout",
                      "max_seconds", "webhook_url", "env"):
            setattr(deployment, field, getattr(conf, field) if field != "env" else conf.env or {})
        deployment.env_secrets = conf.env_secrets or {}
        deployment.save()
        if (after := _public_state(deployment)) != before:
            audit_record(organization=deployment.organization, action=AuditAction.DEPLOYMENT_UPDATE,
                         target=deployment, actor=actor, ip=ip, before=before, after=after)
    return deployment


def deployment_delete(*, deployment: Deployment, actor, ip: str | None = None) -> None:
    """The endpoint and its template at the provider, then the row (its jobs keep their books)."""
    try:
        DRIVERS[deployment.compute.kind].endpoint_delete(
            compute_target(deployment.compute), Endpoint(deployment.endpoint_id, deployment.template_id))
    except UpstreamError as exc:
        raise OrgRuleError(f"The compute provider could not delete the endpoint: {exc}.", 502) from None
    with transaction.atomic():
        audit_record(organization=deployment.organization, action=AuditAction.DEPLOYMENT_DELETE,
                     target=deployment, actor=actor, ip=ip, before=_public_state(deployment))
        deployment.delete()


def deployment_health(deployment: Deployment) -> EndpointHealth | None:
    """The provider's own view of the endpoint (workers idle/running, its queue); None if it cannot say."""
    try:
        return DRIVERS[deployment.compute.kind].health(compute_target(deployment.compute), deployment.endpoint_id)
    except UpstreamError:
        log.warning("health of deployment %s unavailable", deployment.pk, exc_info=True)
        return None


def deployment_price(deployment: Deployment) -> int:
    """Micro-credits per second of a deployment's runs: its dearest GPU tier's price."""
    dearest = max(GPU_TIER_CREDITS_PER_SECOND.values(), key=Decimal)
    return max((credits_to_micro(GPU_TIER_CREDITS_PER_SECOND.get(tier, dearest)) for tier in deployment.gpu_types),
               default=credits_to_micro(dearest))
