"""Signals that let the apps above orgs act on its events without orgs importing them.

Both are sent inside the deleting transaction, with ``organization``, ``actor`` and ``ip``:

- ``organization_deleting`` before anything changes: a receiver refuses the deletion by raising
  ``OrgRuleError`` (billing: the wallet still holds credits).
- ``organization_deleted`` once members and invitations are gone: receivers wind down what the
  organization owned (apikeys: every key is revoked, audited one by one).
"""

from django.dispatch import Signal

organization_deleting = Signal()
organization_deleted = Signal()
