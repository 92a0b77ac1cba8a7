from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.db import transaction

from orgs.pages import VERIFICATION_EMAIL
from orgs.services import personal_organization_create


class AccountAdapter(DefaultAccountAdapter):
    """Signing up also creates the user's personal organization; SSO domains sign in through their IdP only."""

    def pre_authenticate(self, request, **credentials):
        from orgs.sso import connection_for_email

        connection = connection_for_email(credentials.get("email") or credentials.get("username") or "")
        if connection is not None and connection.sso_required:
            raise forms.ValidationError("Your organization requires single sign-on: sign in through your "
                                        "identity provider.")
        super().pre_authenticate(request, **credentials)

    def clean_email(self, email: str) -> str:
        """No password account for an address the login form would send to its IdP anyway."""
        from orgs.sso import connection_for_email

        if (connection := connection_for_email(email)) is not None:
            raise forms.ValidationError(f"Addresses at {connection.domain} sign in with single sign-on: use "
                                        "Sign in with this address, no sign-up needed.")
        return super().clean_email(email)

    @transaction.atomic
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            personal_organization_create(user=user)
        return user

    def respond_email_verification_sent(self, request, user):
        if user is not None:
            request.session[VERIFICATION_EMAIL] = user.email
        return super().respond_email_verification_sent(request, user)
