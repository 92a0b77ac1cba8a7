from billing.models import Wallet


def wallet_balance(*, organization_id: int) -> int:
    """Micro-credits; an organization without a wallet has none."""
    return Wallet.objects.filter(organization_id=organization_id).values_list("balance", flat=True).first() or 0
