"""Checks at the door: the request fields the gateway relies on (to route, reserve, stream and translate),
typed and in range, or a 400 naming the field — before any reservation or upstream call.

Each format lists its fields as rules; a field that is absent passes (upstreams apply their defaults),
one that is present must be what its API documents. Fields the gateway does not read are the upstream's
to judge.
"""

from collections.abc import Callable

from gateway.errors import GatewayError, invalid_request

Rule = Callable[[str, object], str | None]  # (field, value) → what it must be, if it is not


def refused(field: str, must_be: str) -> GatewayError:
    return invalid_request(f"`{field}` must be {must_be}.", code="invalid_request_field", param=field)


def checked(body: dict, rules: dict[str, Rule], *, within: str = "") -> dict:
    """``body``, after every rule whose field it has; ``within`` prefixes nested fields' names."""
    for name, rule in rules.items():
        if (value := body.get(name)) is not None and (must_be := rule(name, value)):
            raise refused(f"{within}{name}", must_be)
    return body


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int, high: int | None = None) -> Rule:
    span = f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"
    return lambda _, v: None if _is_int(v) and v >= low and (high is None or v <= high) else span


def number(low: float, high: float) -> Rule:
    span = f"a number from {low:g} to {high:g}"
    return lambda _, v: None if (_is_int(v) or isinstance(v, float)) and low <= v <= high else span


def boolean(_: str, value: object) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def string(_: str, value: object) -> str | None:
    return None if isinstance(value, str) else "a string"


def string_or_list(_: str, value: object) -> str | None:
    return None if isinstance(value, str | list) else "a string or an array"


def obj(_: str, value: object) -> str | None:
    return None if isinstance(value, dict) else "an object"


def fields(rules: dict[str, Rule]) -> Rule:
    """An object whose own fields pass ``rules`` (errors name them under this field: `config.topP`)."""
    def rule(name: str, value: object) -> str | None:
        if not isinstance(value, dict):
            return "an object"
        checked(value, rules, within=f"{name}.")
        return None
    return rule


def objects(each: Callable[[dict], str | None] | None = None, *, non_empty: bool = False) -> Rule:
    """An array of objects, each passing ``each`` (which says what an item lacks)."""
    def rule(_: str, value: object) -> str | None:
        if not isinstance(value, list) or (non_empty and not value):
            return "a non-empty array of objects" if non_empty else "an array of objects"
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                return f"an array of objects (item {index} is not one)"
            if each and (lacks := each(item)):
                return f"an array of objects, each {lacks} (item {index} is not)"
        return None
    return rule


def with_role(roles: tuple[str, ...], content: tuple[type, ...], *, content_optional: tuple[str, ...] = ()
              ) -> Callable[[dict], str | None]:
    """A message: a role among ``roles``, content of one of the ``content`` types (which the roles in
    ``content_optional`` may leave out: an assistant turn that only calls tools)."""
    names = " or ".join(t.__name__.replace("str", "string").replace("list", "array") for t in content)
    shape = f"with a role of {', '.join(roles)} and {names} content"

    def each(message: dict) -> str | None:
        role, value = message.get("role"), message.get("content")
        if role not in roles:
            return shape
        present = value is not None or role not in content_optional
        return shape if present and not isinstance(value, content) else None
    return each


def named(path: tuple[str, ...] = ()) -> Callable[[dict], str | None]:
    """A tool with a non-empty string name at ``path`` (e.g. ("function",) for OpenAI chat's)."""
    where = ".".join((*path, "name"))

    def each(tool: dict) -> str | None:
        node: object = tool
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        name = node.get("name") if isinstance(node, dict) else None
        return None if isinstance(name, str) and name else f"with a `{where}` string"
    return each
