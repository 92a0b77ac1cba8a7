"""Small builders for organizations with members in each role."""

import uuid

from orgs.models import Membership
from orgs.roles import OWNER
from orgs.services import organization_create, user_create


def org_with_member(role: str):
    """A team organization and a user holding ``role`` in it (an owner always exists)."""
    tag = uuid.uuid4().hex[:8]
    owner = user_create(email=f"owner-{tag}@example.test")
    org = organization_create(name=f"Team {tag}", owner=owner)
    if role == OWNER:
        return org, owner
    member = user_create(email=f"{role}-{tag}@example.test")
    Membership.objects.create(organization=org, user=member, role=role)
    return org, member
