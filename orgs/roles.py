"""Roles are configuration, not rows: an ordered registry of ranks and scopes."""

from dataclasses import dataclass

OWNER, ADMIN, DEVELOPER, BILLING, VIEWER = "owner", "admin", "developer", "billing", "viewer"

ROLES: dict[str, tuple[int, frozenset[str]]] = {  # rank, scopes — a higher rank manages lower ranks
    OWNER: (50, frozenset({"*"})),
    ADMIN: (40, frozenset({"org:read", "org:write", "members:write", "keys:read", "keys:write", "sso:write",
                           "webhooks:read", "webhooks:write", "usage:read", "billing:read", "audit:read", "gpu:read",
                           "gpu:write"})),
    DEVELOPER: (30, frozenset({"org:read", "keys:read", "keys:write", "gpu:read", "gpu:write", "usage:read"})),
    BILLING: (20, frozenset({"org:read", "billing:read", "billing:write", "audit:read", "usage:read", "gpu:read"})),
    VIEWER: (10, frozenset({"org:read", "keys:read", "billing:read", "audit:read", "usage:read", "gpu:read"})),
}
ROLE_CHOICES = [(name, name.capitalize()) for name in ROLES]
# What an API key may be granted on the management API, for scripts and CI: reading, managing keys and GPU
# deployments. Membership, SSO, payments, webhooks and deleting the organization stay with signed-in people.
API_KEY_SCOPES = ("org:read", "usage:read", "keys:read", "keys:write", "billing:read", "audit:read", "gpu:read",
                  "gpu:write")


def role_has_scope(role: str, scope: str) -> bool:
    scopes = ROLES[role][1]
    return "*" in scopes or scope in scopes


def role_outranks(role: str, other: str) -> bool:
    return ROLES[role][0] > ROLES[other][0]


@dataclass(frozen=True)
class ScopeGrant:
    """A credential other than a member's session (an API key): bound to one organization, with scopes.

    Authentication classes put one in ``request.auth``; OrgScopedApi then acts in that organization
    only, and only where both these scopes and the member's current role allow.
    """

    organization_id: int
    scopes: frozenset[str]
