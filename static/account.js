// Sign-in and sign-up: an address whose domain signs in through its identity provider is told so as it is
// typed, and the sign-in form drops the password (the server sends such addresses to the IdP either way).
(function () {
  const form = document.querySelector("form[data-sso-discovery]");
  const email = form && form.querySelector("input[type=email], input[name=login], input[name=email]");
  if (!email) return;
  const notice = form.querySelector("[data-testid=sso-notice]");
  const password = form.querySelector("input[name=password]");
  const submit = form.querySelector("button[type=submit]");
  const signingIn = Boolean(password);
  let asked = "";

  function show(sso, domain) {
    notice.hidden = !sso;
    notice.textContent = !sso ? "" : signingIn
      ? `Addresses at ${domain} sign in with single sign-on: you continue at your identity provider, no password here.`
      : `Addresses at ${domain} sign in with single sign-on, no account needed: use Sign in with this address.`;
    if (signingIn) {
      password.closest(".field").hidden = sso;
      password.required = !sso;
      submit.textContent = sso ? submit.dataset.ssoLabel : submit.dataset.passwordLabel;
    }
  }

  async function discover() {
    const value = email.value.trim();
    const domain = value.split("@")[1] || "";
    if (value === asked) return;
    asked = value;
    if (!domain.includes(".")) return show(false);
    const answer = await fetch(`${form.dataset.ssoDiscovery}?email=${encodeURIComponent(value)}`);
    if (answer.ok && value === asked) show((await answer.json()).sso, domain);
  }
  email.addEventListener("change", discover);
  email.addEventListener("blur", discover);
  if (email.value) discover();
})();
