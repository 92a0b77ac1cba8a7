"""The GPU pages in a real browser: the hosted models with their prices, and deployments made from the form."""

import re

import pytest
from playwright.sync_api import expect

from gpu.models import Deployment
from orgs.roles import VIEWER

pytestmark = pytest.mark.usefixtures("runpod")


def test_the_gpu_page_lists_models_with_prices_and_limits(live_member):
    page, _ = live_member()
    page.goto(f"{page.base_url}/gpu")
    rows = page.get_by_test_id("gpu-models")
    expect(rows).to_contain_text("sdxl")
    expect(rows).to_contain_text("5 / call")
    expect(rows).to_contain_text("2 / GPU-second")


def test_a_developer_deploys_from_the_form_and_sees_its_health(live_member):
    page, org = live_member("developer")
    page.goto(f"{page.base_url}/infra/deployments")
    form = page.get_by_test_id("new-deployment")
    form.locator("input[name=slug]").fill("page-comfy")
    form.locator("select[name=gpu_types]").select_option(["AMPERE_80"])
    form.locator("input[name=workers_max]").fill("2")
    form.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(re.compile(r"/infra/deployments/page-comfy$"))
    expect(page.get_by_test_id("health")).to_contain_text("Workers idle / running")
    assert Deployment.objects.get(organization=org, slug="page-comfy").workers_max == 2


def test_a_viewer_reads_deployments_but_has_no_form(live_member):
    page, _ = live_member(VIEWER)
    page.goto(f"{page.base_url}/infra/deployments")
    expect(page.get_by_test_id("deployments")).to_be_visible()
    expect(page.get_by_test_id("new-deployment")).to_have_count(0)
