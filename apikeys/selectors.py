from apikeys.models import ApiKey


def api_key_by_hash(*, key_hash: str) -> ApiKey | None:
    return ApiKey.objects.filter(key_hash=key_hash).select_related("organization").first()
