from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.db import transaction

from orgs.services import personal_organization_create


class AccountAdapter(DefaultAccountAdapter):
    """Signing up also creates the user's personal organization; SSO-only domains skip passwords."""

    def pre_authenticate(self, request, **credentials):
        from orgs.sso import connection_for_email

        connection = connection_for_email(credentials.get("email") or credentials.get("username") or "")
        if connection is not None and connection.sso_required:
            raise forms.ValidationError("Your organization requires single sign-on: sign in through your "
                                        "identity provider.")
        super().pre_authenticate(request, **credentials)

    @transaction.atomic
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            personal_organization_create(user=user)
        return user
