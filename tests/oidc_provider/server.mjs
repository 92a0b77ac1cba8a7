// A real OpenID Provider on loopback for the OIDC SSO tests: authorization code + PKCE, RS256 ID tokens,
// and oidc-provider's development login/consent pages (any login name becomes the user's email).
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const clients = JSON.parse(process.env.OIDC_CLIENTS);

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: clients.map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: id, email_verified: true }),
  }),
  cookies: { keys: ['hypereal-test-only-cookie-key'] },
});

provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider ready on ${port}`));
