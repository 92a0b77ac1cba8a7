from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction

from orgs.services import personal_organization_create


class AccountAdapter(DefaultAccountAdapter):
    """Signing up also creates the user's personal organization."""

    @transaction.atomic
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            personal_organization_create(user=user)
        return user
