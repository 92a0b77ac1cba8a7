"""Gateway errors, rendered in the shape of the client's wire format."""

from dataclasses import dataclass, field


@dataclass
class GatewayError(Exception):
    status: int
    type: str
    message: str
    code: str | None = None
    extra: dict = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def openai_error_body(err: GatewayError) -> dict:
    return {"error": {"message": err.message, "type": err.type, "param": None, "code": err.code, **err.extra}}


def invalid_request(message: str, *, code: str | None = None, **extra) -> GatewayError:
    return GatewayError(400, "invalid_request_error", message, code, extra)
