"""The front door in Chromium (Playwright) and over HTTP: the account pages, the demo's first look, the
playground and the model list, as a newcomer meets them."""

import io
import re
import uuid
from decimal import Decimal
from unittest import mock
from urllib.parse import quote

import httpx
import pytest
import redis
from allauth.account.models import EmailAddress
from django.core import mail
from django.core.management import call_command
from django.test import Client
from openai import OpenAI
from playwright.sync_api import expect

from apikeys.models import ApiKey
from billing.money import credits_to_micro
from billing.services import wallet_credit
from gateway.playground import (
    TOKEN_SECONDS,
    playground_key_name,
    playground_token_issue,
    playground_token_read,
)
from orgs.models import Membership, SSOConnection, User
from orgs.roles import ADMIN, DEVELOPER, OWNER, ROLES, VIEWER
from orgs.services import invitation_create, user_create
from tests.live import start_gateway, stop_process
from tests.factories import org_with_member
from tests.test_browser import ARTIFACTS, page  # noqa: F401  (page: the Chromium fixture)
from usage.models import RequestLog

PASSWORD = "a long and unguessable password"
SPENDERS = {OWNER, ADMIN, DEVELOPER}
SLOW_MODEL = "fd-slow-chat"  # streams its words 30 ms apart, so the page can be seen filling in


@pytest.fixture(scope="module")
def front_door_url(demo_catalog, sim_url, redis_client, smtp_inbox):
    """A gateway that mails through the loopback SMTP server and checks keys and sessions on every call
    (no cache), so a sign-out or a demotion shows at the very next call."""
    from gateway.models import Provider
    from gateway.services import model_upsert, provider_upsert

    slow = provider_upsert(name="fd-slow", kind=Provider.Kind.OPENAI, base_url=f"{sim_url}/x/chunk_delay_ms=30/v1",
                           api_key="k")
    model_upsert(public_id=SLOW_MODEL, capability="chat", prices_per_mtok={"input": "100", "output": "400"},
                 targets=[(slow, SLOW_MODEL)])
    url, proc = start_gateway(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                              EMAIL_HOST=smtp_inbox.host, EMAIL_PORT=str(smtp_inbox.port),
                              HYPEREAL_KEY_CACHE_SECONDS="0")
    yield url
    stop_process(proc)


def throttles_clear(redis_url: str) -> None:
    """allauth counts sign-ins and emails per address in the Redis cache."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("*allauth*"):
        client.delete(key)
    client.close()


@pytest.fixture(autouse=True)
def fresh_throttles(settings):
    throttles_clear(settings.REDIS_URL)


def verified_member(role: str, credits: str = "1000"):
    """A team organization with credits and a member in ``role`` who can sign in with PASSWORD."""
    org, member = org_with_member(role)
    member.set_password(PASSWORD)
    member.save()
    EmailAddress.objects.create(user=member, email=member.email, verified=True, primary=True)
    wallet_credit(organization_id=org.pk, amount=credits_to_micro(credits), idempotency_key=f"fd:{org.slug}")
    return org, member


# Data for the browser tests comes from fixtures named before `page`: once Playwright runs, its event loop
# owns this thread, and Django refuses ORM calls from it.

@pytest.fixture
def developer():
    return verified_member(DEVELOPER)


@pytest.fixture
def viewer():
    return verified_member(VIEWER)


def sign_in(page, url: str, email: str, password: str = PASSWORD, next_path: str = "") -> None:
    page.goto(f"{url}/accounts/login/" + (f"?next={quote(next_path)}" if next_path else ""))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def mailed_link(inbox, to: str, path: str) -> str:
    for message in reversed(inbox.messages):
        if message["To"] == to:
            body = (message.get_body(("plain",)) if message.is_multipart() else message).get_payload(decode=True)
            return re.search(rf"https?://\S+{re.escape(path)}\S+", body.decode()).group(0)
    raise AssertionError(f"no email to {to}")


def selected_organization(page):
    return page.locator("select[name=org] option:checked")


# --- accounts ---------------------------------------------------------------------------------------------

def test_sign_up_then_the_emailed_link_opens_the_dashboard(front_door_url, smtp_inbox, page):
    address = f"newcomer-{uuid.uuid4().hex[:8]}@example.test"
    page.goto(f"{front_door_url}/accounts/signup/")
    page.get_by_label("Email").fill(address)
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_label("Password (again)").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator(".field-error").first).to_contain_text("too short")  # said next to the field

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    expect(page.get_by_label("Didn’t get it? Send a new link to")).to_have_value(address)

    page.goto(mailed_link(smtp_inbox, address, "/accounts/confirm-email/"))
    page.get_by_role("button", name="Confirm and continue").click()
    page.wait_for_url(f"{front_door_url}/usage")
    expect(selected_organization(page)).to_have_text(f"{address.split('@')[0]} (personal)")
    expect(page.get_by_test_id("total-cost")).to_have_text("0")


def test_a_wrong_password_says_so_on_the_form(front_door_url, viewer, page):
    _, member = viewer
    sign_in(page, front_door_url, member.email, "not the password")
    expect(page.get_by_role("alert")).to_contain_text("not correct")
    expect(page.get_by_label("Email")).to_have_value(member.email)


def test_password_reset_by_email(front_door_url, smtp_inbox, developer, page):
    _, member = developer
    page.goto(f"{front_door_url}/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(member.email)
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

    page.goto(mailed_link(smtp_inbox, member.email, "/accounts/password/reset/key/"))
    new_password = "an even longer and newer password"
    page.get_by_label("New Password", exact=True).fill(new_password)
    page.get_by_label("New Password (again)").fill(new_password)
    page.get_by_role("button", name="Save the new password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()

    sign_in(page, front_door_url, member.email, new_password)
    page.wait_for_url(f"{front_door_url}/usage")


@pytest.fixture
def unreachable_sso_domain(developer) -> str:
    """An email domain routed to an OpenID provider that Hypereal could not reach."""
    domain = f"sso-{uuid.uuid4().hex[:8]}.test"
    SSOConnection.objects.create(organization=developer[0], type="oidc", domain=domain,
                                 issuer="https://idp.example.test", client_id="hypereal", status="error",
                                 status_detail="discovery failed")
    return domain


def test_an_sso_domain_signs_in_at_its_identity_provider(front_door_url, unreachable_sso_domain, page):
    domain = unreachable_sso_domain
    page.goto(f"{front_door_url}/accounts/login/")
    page.get_by_label("Email").fill(f"ada@{domain}")
    page.get_by_label("Email").blur()
    expect(page.get_by_test_id("sso-notice")).to_contain_text(f"Addresses at {domain} sign in with single sign-on")
    expect(page.get_by_label("Password")).to_be_hidden()
    page.get_by_role("button", name="Continue with single sign-on").click()
    # This IdP cannot be reached: the hand-off says so in the house layout, with the way back.
    expect(page.get_by_test_id("sso-error")).to_contain_text("not reachable")
    expect(page.get_by_role("link", name="Back to sign in")).to_be_visible()


# --- the demo's first look --------------------------------------------------------------------------------

@pytest.fixture
def demo_with_traffic(front_door_url, sim_url, settings) -> None:
    """What `make run` sets up (bootstrap_demo), and two calls with the key it prints."""
    settings.HYPEREAL = {**settings.HYPEREAL, "SIMULATOR_URL": sim_url}
    printed = io.StringIO()
    call_command("bootstrap_demo", "--print-key", stdout=printed, stderr=io.StringIO())
    key = printed.getvalue().split()[-1]
    client = OpenAI(base_url=f"{front_door_url}/api/v1", api_key=key)
    for words in ("Hello", "Hello again"):
        client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": words}])
    httpx.get(f"{front_door_url}/api/v1/credits", headers={"Authorization": f"Bearer {key}"})  # written now


def test_demo_sign_in_opens_the_demo_dashboard_and_the_switcher_remembers(front_door_url, demo_with_traffic, page):
    page.goto(f"{front_door_url}/usage")
    page.get_by_label("Email").fill("demo@hypereal.local")
    page.get_by_label("Password").fill("hypereal-demo")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{front_door_url}/usage")
    expect(selected_organization(page)).to_have_text("Demo")
    expect(page.get_by_test_id("total-cost")).not_to_have_text("0")
    expect(page.locator("#log-rows tr[data-request-id]").first).to_contain_text("demo key (make run)")

    # Another organization, chosen in the switcher, is the one that opens after signing in again.
    page.get_by_label("Organization").select_option(label="demo (personal)")
    expect(selected_organization(page)).to_have_text("demo (personal)")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, front_door_url, "demo@hypereal.local", "hypereal-demo")
    page.wait_for_url(f"{front_door_url}/usage")
    expect(selected_organization(page)).to_have_text("demo (personal)")


# --- the playground ---------------------------------------------------------------------------------------

def test_playground_chat_streams_shows_its_cost_and_opens_its_log_row(front_door_url, developer, page):
    org, member = developer
    sign_in(page, front_door_url, member.email, next_path=f"/playground?org={org.slug}")
    page.wait_for_url(re.compile(r"/playground"))
    assert not re.search(r"ck_(?!pg\.)[\w-]{20,}", page.content()), "no API key is ever in the page"
    page.get_by_label("Model").select_option(SLOW_MODEL)
    page.get_by_label("Message").fill("Tell me about gateways")
    page.evaluate("""() => {  // every text the answer shows on its way, to see it arrive in pieces
        window.seen = new Set();
        new MutationObserver(() => {
            const answer = document.querySelector(".turn.assistant div");
            if (answer) window.seen.add(answer.textContent);
        }).observe(document.getElementById("transcript"), {subtree: true, childList: true, characterData: true});
    }""")
    page.get_by_role("button", name="Run").click()

    expect(page.get_by_test_id("cost")).to_have_text(re.compile(r"^0\.\d+$"))
    answer = page.locator(".turn.assistant div").inner_text()
    assert answer and page.evaluate("() => window.seen.size") >= 3, "the answer streamed in, word by word"
    expect(page.get_by_test_id("usage")).to_have_text(re.compile(r"^\d+ in / \d+ out$"))
    expect(page.get_by_test_id("latency")).to_contain_text("ms to first token")
    cost = Decimal(page.get_by_test_id("cost").inner_text())
    expect(page.get_by_test_id("balance")).to_have_text(str(Decimal(1000) - cost))  # charged exactly that

    link = page.get_by_test_id("request-link")
    request_id = link.inner_text()
    link.click()
    row = page.locator(f'#log-rows tr[data-request-id="{request_id}"]')
    expect(row).to_contain_text(SLOW_MODEL)
    expect(row).to_contain_text(playground_key_name(member))
    expect(row.locator("td").nth(6)).to_have_text(str(cost))
    page.set_viewport_size({"width": 1366, "height": 900})
    page.screenshot(path=ARTIFACTS / "playground-log-row.png")


def test_playground_generates_an_image_and_speaks(front_door_url, developer, page):
    """Media models in the same form: the picture is shown and the speech plays, each charged its price."""
    org, member = developer
    sign_in(page, front_door_url, member.email, next_path=f"/playground?org={org.slug}")
    page.wait_for_url(re.compile(r"/playground"))
    page.get_by_label("Model").select_option("gpt-image-2")
    page.get_by_label("Prompt", exact=True).fill("a chrome teapot at sunset")
    page.get_by_role("button", name="Run").click()
    picture = page.locator(".media-out img")
    expect(picture).to_have_count(1)
    picture.evaluate("img => img.decode()")  # the bytes are a picture the browser can draw
    assert picture.evaluate("img => img.naturalWidth") == 1024
    expect(page.get_by_test_id("usage")).to_have_text("1 image")
    image_cost = Decimal(page.get_by_test_id("cost").inner_text())
    assert image_cost == 5

    page.get_by_label("Model").select_option("audio-tts")
    page.get_by_label("Text to speak").fill("Welcome to Hypereal.")
    page.get_by_role("button", name="Run").click()
    player = page.locator(".media-out audio")
    expect(player).to_have_count(1)
    duration = player.evaluate("""audio => new Promise((resolve, reject) => {
        audio.onloadedmetadata = () => resolve(audio.duration); audio.onerror = () => reject(audio.error);
        if (audio.readyState >= 1) resolve(audio.duration); })""")
    assert duration > 0, "the speech is audio the browser can play"
    expect(page.get_by_test_id("request-link")).not_to_be_empty()
    speech_cost = Decimal(page.get_by_test_id("cost").inner_text())
    assert speech_cost > 0
    expect(page.get_by_test_id("balance")).to_have_text(str(Decimal(1000) - image_cost - speech_cost))


def test_a_viewer_cannot_use_the_playground(front_door_url, viewer, page):
    org, member = viewer
    sign_in(page, front_door_url, member.email, next_path=f"/playground?org={org.slug}")
    expect(page.get_by_test_id("playground-refused")).to_contain_text("Your role cannot spend credits")
    expect(page.get_by_role("button", name="Run")).to_have_count(0)
    expect(page.locator("header nav").get_by_role("link", name="Playground")).to_have_count(0)
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    minted = page.request.post(f"{front_door_url}/playground/token?org={org.slug}", headers={"X-CSRFToken": csrf})
    assert minted.status == 403


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_only_roles_that_may_spend_get_a_playground(role):
    """In a transaction, with a model of its own: the suite's session catalog is committed data, which a
    transactional test's flush would take away if it were installed here."""
    from gateway.models import Provider
    from gateway.services import model_upsert, provider_upsert

    provider = provider_upsert(name="pg-sim", kind=Provider.Kind.OPENAI, base_url="http://127.0.0.1:9/v1",
                               api_key="k")
    model_upsert(public_id="pg-chat", capability="chat", targets=[(provider, "pg-chat")],
                 prices_per_mtok={"input": "1", "output": "2"})
    org, member = org_with_member(role)
    client = Client()
    client.force_login(member)
    assert (b'data-testid="run"' in client.get(f"/playground?org={org.slug}").content) == (role in SPENDERS)
    minted = [client.post(f"/playground/token?org={org.slug}") for _ in range(2)]
    assert [m.status_code for m in minted] == ([200, 200] if role in SPENDERS else [403, 403])
    # One Playground key per member and organization, whatever the number of tokens.
    assert ApiKey.objects.filter(organization=org, name=playground_key_name(member)).count() == (role in SPENDERS)


def test_a_playground_token_works_only_with_its_session_and_a_spending_role(front_door_url):
    org, member = verified_member(DEVELOPER)
    browser = Client()
    browser.force_login(member)
    token = browser.post(f"/playground/token?org={org.slug}").json()["token"]
    session = browser.cookies["sessionid"].value

    def chat(cookie: str | None, credential: str = token) -> httpx.Response:
        return httpx.post(f"{front_door_url}/v1/chat/completions", json={
            "model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {credential}", **({"Cookie": f"sessionid={cookie}"} if cookie else {})})

    served = chat(session)
    assert served.status_code == 200
    assert chat(None).status_code == 401, "a token alone is not enough"
    elsewhere = Client()
    elsewhere.force_login(member)
    assert chat(elsewhere.cookies["sessionid"].value).status_code == 401, "another session's cookie is not it"
    assert chat(session, token[:-2] + ("AA" if not token.endswith("AA") else "BB")).status_code == 401

    Membership.objects.filter(organization=org, user=member).update(role=VIEWER)
    assert chat(session).status_code == 401, "a role that may not spend stops at once"
    Membership.objects.filter(organization=org, user=member).update(role=DEVELOPER)
    assert chat(session).status_code == 200

    # Metered and logged like any API call, under the member's Playground key (GET /credits writes it now).
    httpx.get(f"{front_door_url}/v1/credits", headers={"Authorization": f"Bearer {token}",
                                                       "Cookie": f"sessionid={session}"})
    log = RequestLog.objects.select_related("api_key").get(request_id=served.headers["x-request-id"])
    assert log.api_key.name == playground_key_name(member) and log.cost > 0

    browser.logout()
    assert chat(session).status_code == 401, "signing out ends the token"


def test_a_playground_token_expires(settings):
    session_key = "s" * 32
    with mock.patch("django.core.signing.time.time", return_value=1_800_000_000):
        token = playground_token_issue(key=ApiKey(key_hash="0" * 64), user_id=7, session_key=session_key)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_key}"
    with mock.patch("django.core.signing.time.time", return_value=1_800_000_000 + TOKEN_SECONDS - 1):
        assert playground_token_read(token, cookie).user_id == 7
    with mock.patch("django.core.signing.time.time", return_value=1_800_000_000 + TOKEN_SECONDS + 1):
        assert playground_token_read(token, cookie) is None


# --- the model list ---------------------------------------------------------------------------------------

@pytest.fixture
def listed_models(front_door_url, make_account) -> list[dict]:
    return httpx.get(f"{front_door_url}/v1/models",
                     headers={"Authorization": f"Bearer {make_account().key}"}).json()["data"]


def test_the_models_page_filters_the_catalog_the_api_lists(front_door_url, listed_models, page):
    listed = listed_models
    page.goto(f"{front_door_url}/models")  # no sign-in needed
    cards = page.get_by_test_id("model-card")
    expect(cards).to_have_count(len(listed))

    page.get_by_label("Capability").select_option("image")
    expect(cards).to_have_count(len([m for m in listed if m["capability"] == "image"]))
    assert sorted(cards.evaluate_all("cs => cs.map(c => c.dataset.model)")) == \
        sorted(m["id"] for m in listed if m["capability"] == "image")
    expect(page).to_have_url(re.compile(r"capability=image"))  # a link to the filtered list

    page.get_by_label("Capability").select_option("")
    page.get_by_label("Provider").select_option("simulator-anthropic")
    expect(page).to_have_url(re.compile(r"capability=&provider=simulator-anthropic"))
    page.get_by_label("Search").fill("haiku")
    expect(page).to_have_url(re.compile(r"provider=simulator-anthropic.*q=haiku|q=haiku.*provider=simulator-anthropic"))
    haiku = page.locator('[data-model="claude-haiku-4-5"]')
    expect(haiku).to_be_visible()
    for text in cards.all_inner_texts():
        assert "haiku" in text and "simulator-anthropic" in text
    expect(haiku.get_by_test_id("prices")).to_contain_text("$1.00")  # 100 credits per million input tokens
    haiku.get_by_text("Example").click()
    expect(haiku.get_by_test_id("example")).to_contain_text(f"{front_door_url}/v1/messages")

    page.get_by_label("Search").fill("no-such-model")
    expect(page.get_by_test_id("no-models")).to_be_visible()


# --- pages allauth has no view for ------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_invitation_link_accepts_and_opens_the_organization():
    org, owner = org_with_member(OWNER)
    invited = user_create(email=f"invited-{org.slug}@example.test")
    _, token = invitation_create(actor=org.memberships.get(user=owner), email=invited.email, role=DEVELOPER)
    assert b"Sign in to accept" in Client().get(f"/invitations/{token}").content
    client = Client()
    client.force_login(invited)
    assert org.name.encode() in client.get(f"/invitations/{token}").content
    accepted = client.post(f"/invitations/{token}")
    assert accepted.status_code == 302 and accepted["Location"] == f"/usage?org={org.slug}"
    assert Membership.objects.get(organization=org, user=invited).role == DEVELOPER
    assert Client().get("/invitations/not-a-token").status_code == 404


@pytest.mark.django_db
def test_a_verification_link_can_be_sent_again_once_the_cooldown_passed(settings):
    client = Client()
    client.post("/accounts/signup/", {"email": "again@example.test", "password1": PASSWORD, "password2": PASSWORD})
    assert len(mail.outbox) == 1
    client.post("/accounts/confirm-email/resend/", {"email": "again@example.test"})
    assert len(mail.outbox) == 1, "within the cooldown of the first email"
    throttles_clear(settings.REDIS_URL)  # the cooldown has passed
    answer = client.post("/accounts/confirm-email/resend/", {"email": "again@example.test"}, follow=True)
    assert len(mail.outbox) == 2 and "/accounts/confirm-email/" in mail.outbox[-1].body
    assert b"a new link is on its way" in answer.content
    client.post("/accounts/confirm-email/resend/", {"email": "nobody@example.test"})
    assert len(mail.outbox) == 2, "no email for an address without an account, and the same answer"


@pytest.mark.django_db
def test_an_sso_domain_cannot_sign_up_with_a_password():
    org, _ = org_with_member(OWNER)
    SSOConnection.objects.create(organization=org, type="oidc", domain="acme-sso.test")
    answer = Client().post("/accounts/signup/", {"email": "bob@acme-sso.test", "password1": PASSWORD,
                                                 "password2": PASSWORD})
    assert b"sign in with single sign-on" in answer.content
    assert not User.objects.filter(email="bob@acme-sso.test").exists()


# --- phones -----------------------------------------------------------------------------------------------

def test_front_door_pages_fit_a_phone(front_door_url, developer, page):
    org, member = developer
    page.set_viewport_size({"width": 390, "height": 844})
    paths = ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", "/models"]
    for path in paths:
        page.goto(f"{front_door_url}{path}")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px on a phone"
    sign_in(page, front_door_url, member.email, next_path=f"/playground?org={org.slug}")
    for path in ("/playground", "/accounts/email/", "/accounts/logout/"):
        page.goto(f"{front_door_url}{path}")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px on a phone"
        page.screenshot(path=ARTIFACTS / f"phone{path.rstrip('/').replace('/', '-')}.png")
