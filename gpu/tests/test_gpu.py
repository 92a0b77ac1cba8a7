"""Serverless GPU end to end: hosted GPU models and an organization's deployments on RunPod's API.

The compute provider is the simulator speaking RunPod's queue and REST APIs over real HTTP; the gateway
is a real process; money is read back from the ledger. Polls are the engine's own sweep, or a read.
"""

import io
import uuid

import httpx
import pytest
from django.test import Client
from PIL import Image

from apikeys.services import api_key_create
from billing.models import LedgerEntry, Wallet
from billing.money import MICRO
from gpu.demo import SDXL_PRICE, WAN_PER_SECOND
from gpu.jobs import jobs_poll_due
from gpu.models import Deployment, Job
from orgs.models import Membership
from orgs.roles import ADMIN, BILLING, DEVELOPER, OWNER, VIEWER
from orgs.services import user_create
from orgs.webhooks import webhook_create

ROLES = [OWNER, ADMIN, DEVELOPER, BILLING, VIEWER]


def call(gateway_url: str, key: str, path: str, body: dict | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if body is None:
        return httpx.get(f"{gateway_url}{path}", headers=headers, timeout=60)
    return httpx.post(f"{gateway_url}{path}", headers=headers, json=body, timeout=60)


def advance(sim_url: str, ms: int) -> None:
    httpx.post(f"{sim_url}/_sim/clock", json={"advance_ms": ms}).raise_for_status()


def kinds(org) -> list[tuple[str, int]]:
    return list(LedgerEntry.objects.filter(wallet__organization=org).exclude(kind="topup").order_by("pk")
                .values_list("kind", "amount"))


def balance(org) -> int:
    return Wallet.objects.get(organization=org).balance


def test_a_sync_gpu_model_answers_inline_with_its_image(gateway_url, runpod, make_account):
    acct = make_account(credits="100")
    answer = call(gateway_url, acct.key, "/v1/gpu/sdxl", {"input": {"prompt": "a tabby cat astronaut"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "succeeded" and body["costCredits"] == "5" and body["durationMs"] is not None
    image = Image.open(io.BytesIO(httpx.get(body["outputs"][0]).content))
    assert image.size == (1024, 1024)
    assert kinds(acct.org) == [("hold", -SDXL_PRICE), ("release", SDXL_PRICE), ("charge", -SDXL_PRICE)]


def test_an_async_gpu_model_queues_and_settles_on_the_reported_seconds(gateway_url, sim_url, runpod, make_account):
    acct = make_account(credits="1000")
    answer = call(gateway_url, acct.key, "/v1/gpu/wan-video",
                  {"input": {"prompt": "drone over Tokyo, neon, rain", "seconds": 5, "__sim": {"exec_ms": 155_200}}})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "queued" and body["pollUrl"] == f"/v1/gpu/jobs/{body['id']}"
    assert kinds(acct.org) == [("hold", -300 * WAN_PER_SECOND)], "the hold is max seconds × the price"
    advance(sim_url, 200_000)
    done = call(gateway_url, acct.key, body["pollUrl"]).json()  # read: the provider is asked first
    assert done["status"] == "succeeded" and done["executionMs"] == 155_200
    assert done["costCredits"] == "312"  # 156 started seconds × 2 credits
    assert done["outputs"][0].startswith("http") and httpx.get(done["outputs"][0]).content[4:8] == b"ftyp"
    assert balance(acct.org) == 1000 * MICRO - 312 * MICRO


def test_a_client_may_wait_for_an_async_gpu_model(gateway_url, runpod, make_account):
    """`Prefer: wait=N` holds the request until the job ends, as for videos and deployment runs."""
    acct = make_account(credits="1000")
    answer = httpx.post(f"{gateway_url}/v1/gpu/wan-video", timeout=60, json={
        "input": {"prompt": "a short clip", "__sim": {"delay_ms": 100, "exec_ms": 1_500}}},
        headers={"Authorization": f"Bearer {acct.key}", "Prefer": "wait=30"})
    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["status"] == "succeeded" and done["executionMs"] == 1_500
    assert done["creditsCharged"] == str(2 * WAN_PER_SECOND // MICRO)  # 2 started seconds
    assert balance(acct.org) == 1000 * MICRO - 2 * WAN_PER_SECOND


def test_seconds_are_capped_at_the_models_maximum(gateway_url, sim_url, runpod, make_account):
    acct = make_account(credits="1000")
    body = call(gateway_url, acct.key, "/v1/gpu/wan-video",
                {"input": {"prompt": "long", "__sim": {"exec_ms": 299_900}}}).json()
    advance(sim_url, 400_000)
    done = call(gateway_url, acct.key, body["pollUrl"]).json()
    assert done["status"] == "succeeded" and done["costCredits"] == "600"  # 300 s × 2, never beyond


@pytest.mark.parametrize("outcome, status", [("FAILED", "failed"), ("TIMED_OUT", "timed_out")])
def test_failed_and_timed_out_gpu_jobs_release_the_hold(gateway_url, sim_url, runpod, make_account, outcome,
                                                        status):
    acct = make_account(credits="1000")
    body = call(gateway_url, acct.key, "/v1/gpu/wan-video",
                {"input": {"prompt": "p", "__sim": {"outcome": outcome}}}).json()
    advance(sim_url, 10_000)
    done = call(gateway_url, acct.key, body["pollUrl"]).json()
    assert done["status"] == status and done["costCredits"] == "0"
    assert [kind for kind, _ in kinds(acct.org)] == ["hold", "release"] and balance(acct.org) == 1000 * MICRO


def test_a_cancelled_gpu_job_releases_the_hold(gateway_url, runpod, make_account):
    acct = make_account(credits="1000")
    body = call(gateway_url, acct.key, "/v1/gpu/wan-video", {"input": {"prompt": "p", "__sim": {"delay_ms": 600_000}}}).json()
    cancelled = httpx.post(f"{gateway_url}/v1/jobs/{body['id']}/cancel", headers={"Authorization": f"Bearer {acct.key}"})
    assert cancelled.json()["status"] == "cancelled" and balance(acct.org) == 1000 * MICRO


def test_duplicate_terminal_webhooks_settle_once(gateway_url, sim_url, runpod, make_account, celery_worker):
    acct = make_account(credits="1000")
    body = call(gateway_url, acct.key, "/v1/gpu/wan-video",
                {"input": {"prompt": "p", "__sim": {"webhook": "duplicate"}}}).json()
    job = Job.objects.get(public_id=body["id"])
    advance(sim_url, 10_000)  # the simulator posts its webhook twice; each is followed by a poll
    for _ in range(10):
        Job.objects.filter(pk=job.pk).update(polled_at=None)
        jobs_poll_due(seconds=1)
        job.refresh_from_db()
        if not job.active:
            break
    assert job.status == Job.Status.SUCCEEDED and job.charged == 2 * MICRO
    assert [kind for kind, _ in kinds(acct.org)] == ["hold", "release", "charge"]
    assert job.events.filter(kind="webhook").count() == 1, "the redelivery is recorded once"


def test_another_organizations_gpu_job_is_not_found(gateway_url, runpod, make_account):
    owner, stranger = make_account(credits="100"), make_account(credits="100")
    body = call(gateway_url, owner.key, "/v1/gpu/sdxl", {"input": {"prompt": "mine"}}).json()
    answer = call(gateway_url, stranger.key, f"/v1/gpu/jobs/{body['id']}")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "job_not_found"


def test_an_unknown_gpu_model_and_a_missing_input_are_clear_errors(gateway_url, runpod, make_account):
    acct = make_account(credits="100")
    unknown = call(gateway_url, acct.key, "/v1/gpu/no-such-model", {"input": {}})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "gpu_model_not_found"
    missing = call(gateway_url, acct.key, "/v1/gpu/sdxl", {"prompt": "no input"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "input"


# --- deployments -------------------------------------------------------------------------------------

def member(org, role: str) -> Client:
    user = user_create(email=f"{role}-{uuid.uuid4().hex[:6]}@example.test")
    Membership.objects.create(organization=org, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client


COMFY = {"slug": "my-comfy-workflow", "name": "My Comfy", "dockerImage": "runpod/worker-comfyui:5.1.0-base",
         "gpuTypes": "ADA_48_PRO,AMPERE_80", "workersMax": 2, "idleTimeout": 30, "maxSeconds": 120,
         "envSecrets": {"HF_TOKEN": "hf_secret"}}


@pytest.mark.parametrize("role", ROLES + [None])
def test_who_may_manage_and_read_deployments(runpod, make_account, role):
    acct = make_account(credits="10")
    client = member(acct.org, role) if role else member(make_account(credits="0").org, VIEWER)
    created = client.post("/v1/deployments", {**COMFY, "slug": f"d-{uuid.uuid4().hex[:6]}"},
                          content_type="application/json", HTTP_X_ORGANIZATION=acct.org.slug)
    listed = client.get("/v1/deployments", HTTP_X_ORGANIZATION=acct.org.slug)
    if role is None:
        assert created.status_code == 404 and listed.status_code == 404
    elif role in (OWNER, ADMIN, DEVELOPER):
        assert created.status_code == 201 and listed.status_code == 200
        assert created.json()["envSecrets"] == ["HF_TOKEN"] and "hf_secret" not in created.content.decode()
    else:
        assert created.status_code == 403 and listed.status_code == 200


def test_a_deployment_runs_settles_and_is_torn_down(gateway_url, sim_url, runpod, make_account):
    acct = make_account(credits="1000")
    owner = acct.org.memberships.get().user
    webhook_create(organization=acct.org, url="https://hooks.example.test/gpu", events=["job.completed"],
                   actor=owner)
    client = member(acct.org, DEVELOPER)
    created = client.post("/v1/deployments", {**COMFY, "webhookUrl": "https://hooks.example.test/comfy"},
                          content_type="application/json", HTTP_X_ORGANIZATION=acct.org.slug)
    assert created.status_code == 201, created.content
    deployment = Deployment.objects.get(organization=acct.org, slug="my-comfy-workflow")
    endpoint = httpx.get(f"{sim_url}/runpod/rest/v1/endpoints/{deployment.endpoint_id}",
                         headers={"Authorization": "Bearer rp-sim-key"}).json()
    assert (endpoint["gpuTypeIds"], endpoint["workersMax"], endpoint["idleTimeout"],
            endpoint["executionTimeoutMs"]) == (["ADA_48_PRO", "AMPERE_80"], 2, 30, 120_000)
    assert endpoint["template"]["env"] == {"HF_TOKEN": "hf_secret"}  # the secret reaches the worker, only it
    workflow = {"5": {"class_type": "EmptyLatentImage", "inputs": {"width": 640, "height": 480, "batch_size": 1}}}
    run = call(gateway_url, acct.key, "/v1/gpu/run/my-comfy-workflow",
               {"input": {"workflow": workflow, "workflow_overrides": {"Sampler.steps": 30},
                          "__sim": {"exec_ms": 18_420}}})
    assert run.status_code == 202 and run.json()["status"] == "queued" and run.json()["provider_job_id"]
    advance(sim_url, 30_000)
    done = call(gateway_url, acct.key, f"/v1/gpu/jobs/{run.json()['job_id']}").json()
    assert done["status"] == "succeeded" and done["executionMs"] == 18_420
    assert done["creditsCharged"] == "1.444"  # 19 started seconds × 0.076 credits (its dearest tier, AMPERE_80)
    [image_url] = done["output"]["images"]
    assert Image.open(io.BytesIO(httpx.get(image_url).content)).size == (640, 480)
    job = Job.objects.get(public_id=done["job_id"])
    deliveries = set(job.organization.webhooks.values_list("deliveries__url", flat=True))
    assert {"", "https://hooks.example.test/comfy"} <= deliveries, "the subscription and the deployment's URL"
    detail = client.get("/v1/deployments/my-comfy-workflow", HTTP_X_ORGANIZATION=acct.org.slug).json()
    assert detail["state"]["workers"] is not None and detail["recentJobs"][0]["jobId"] == job.public_id
    changed = client.patch("/v1/deployments/my-comfy-workflow", {"workersMax": 4, "dockerImage": "runpod/worker-comfyui:5.2.0-base"},
                           content_type="application/json", HTTP_X_ORGANIZATION=acct.org.slug)
    assert changed.status_code == 200 and changed.json()["workersMax"] == 4
    endpoint = httpx.get(f"{sim_url}/runpod/rest/v1/endpoints/{deployment.endpoint_id}",
                         headers={"Authorization": "Bearer rp-sim-key"}).json()
    assert endpoint["workersMax"] == 4 and endpoint["template"]["imageName"] == "runpod/worker-comfyui:5.2.0-base"
    assert client.delete("/v1/deployments/my-comfy-workflow", HTTP_X_ORGANIZATION=acct.org.slug).status_code == 204
    gone = httpx.get(f"{sim_url}/runpod/rest/v1/endpoints/{deployment.endpoint_id}",
                     headers={"Authorization": "Bearer rp-sim-key"})
    assert gone.status_code == 404
    assert set(acct.org.audit_events.filter(action__startswith="deployment.").values_list("action", flat=True)) \
        == {"deployment.create", "deployment.update", "deployment.delete"}


def test_an_api_key_manages_deployments_only_with_gpu_scopes(runpod, make_account):
    acct = make_account(credits="10")
    owner = acct.org.memberships.get().user
    _, plain = api_key_create(organization=acct.org, name="model api only", created_by=owner)
    _, scoped = api_key_create(organization=acct.org, name="infra", created_by=owner,
                               scopes=frozenset({"gpu:read", "gpu:write"}))
    client = Client()
    assert client.get("/v1/deployments", HTTP_AUTHORIZATION=f"Bearer {plain}").status_code == 403
    answer = client.post("/v1/deployments", {**COMFY, "slug": "from-ci"}, content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {scoped}")
    assert answer.status_code == 201


def test_the_deployments_api_answers_through_the_gateway_process(gateway_url, runpod, make_account):
    """The model API's JSON 404 for unknown /v1 paths leaves the management API's /v1/deployments to Django."""
    acct = make_account(credits="10")
    owner = acct.org.memberships.get().user
    _, scoped = api_key_create(organization=acct.org, name="infra", created_by=owner,
                               scopes=frozenset({"gpu:read", "gpu:write"}))
    headers = {"Authorization": f"Bearer {scoped}"}
    created = httpx.post(f"{gateway_url}/api/v1/deployments", json={**COMFY, "slug": "over-http"}, headers=headers,
                         timeout=60)
    assert created.status_code == 201, created.text
    listed = httpx.get(f"{gateway_url}/v1/deployments", headers=headers, timeout=60).json()
    assert [d["slug"] for d in listed["data"]] == ["over-http"]
    assert httpx.get(f"{gateway_url}/v1/deployments/over-http", headers=headers, timeout=60).json()["slug"] \
        == "over-http"
    unknown = httpx.get(f"{gateway_url}/v1/deployment", headers=headers, timeout=60)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_the_runpod_driver_speaks_runpods_documented_shapes(gateway_url, sim_url, runpod, make_account):
    acct = make_account(credits="1000")
    client = member(acct.org, OWNER)
    client.post("/v1/deployments", {**COMFY, "slug": "shapes"}, content_type="application/json",
                HTTP_X_ORGANIZATION=acct.org.slug)
    deployment = Deployment.objects.get(organization=acct.org, slug="shapes")
    call(gateway_url, acct.key, "/v1/gpu/run/shapes", {"input": {"workflow": {}}})
    seen = httpx.get(f"{sim_url}/_sim/requests?limit=50").json()

    def request_to(method_path: str) -> dict:
        return next(r for r in seen if r["path"].endswith(method_path))

    template = request_to("/runpod/rest/v1/templates")["body"]
    assert set(template) == {"name", "imageName", "isServerless", "env", "containerDiskInGb"}
    assert (template["imageName"], template["isServerless"]) == ("runpod/worker-comfyui:5.1.0-base", True)
    endpoint = request_to("/runpod/rest/v1/endpoints")["body"]
    assert set(endpoint) == {"name", "templateId", "gpuTypeIds", "gpuCount", "workersMin", "workersMax",
                             "idleTimeout", "executionTimeoutMs", "scalerType", "scalerValue"}
    assert endpoint["scalerType"] in ("QUEUE_DELAY", "REQUEST_COUNT") and endpoint["gpuCount"] == 1
    run = request_to(f"/runpod/v2/{deployment.endpoint_id}/run")
    assert set(run["body"]) == {"input", "webhook", "policy"}
    assert run["body"]["policy"] == {"executionTimeout": 120_000, "ttl": 120_000 + 600_000}
    assert run["body"]["webhook"].startswith(gateway_url + "/api/v1/jobs/callbacks/")
    assert run["headers"]["authorization"] == "***" + runpod.api_key[-4:], \
        "the key as a bearer token (the simulator redacts all but its end)"


def test_the_demo_runs_a_gpu_model_and_a_comfyui_deployment(gateway_url, sim_url, runpod, settings):
    """What `make run` sets up (bootstrap_demo): both work with the key it prints."""
    from django.core.management import call_command

    settings.HYPEREAL = {**settings.HYPEREAL, "SIMULATOR_URL": sim_url}
    printed = io.StringIO()
    call_command("bootstrap_demo", "--print-key", stdout=printed, stderr=io.StringIO())
    key = printed.getvalue().split()[-1]
    image = call(gateway_url, key, "/v1/gpu/sdxl", {"input": {"prompt": "a lighthouse at dawn"}})
    assert image.status_code == 200 and image.json()["status"] == "succeeded", image.text
    workflow = {"5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}}}
    run = call(gateway_url, key, "/v1/gpu/run/comfyui-demo", {"input": {"workflow": workflow}})
    assert run.status_code == 202, run.text
    advance(sim_url, 30_000)
    done = call(gateway_url, key, f"/v1/gpu/jobs/{run.json()['job_id']}").json()
    assert done["status"] == "succeeded" and done["output"]["images"]
