"""Request bodies as handlers receive them: a JSON object, or multipart/form-data read into the same shape.

Form fields follow the bracket convention the official SDKs write (``image[]`` repeated, ``sim[queue_ms]``):
``name[]`` and a repeated ``name`` collect into a list, ``name[key]`` into an object. Files arrive as
``Upload``; other fields as strings, a ``sim`` field holding JSON text as the object it spells.
"""

from __future__ import annotations

import json
import re
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from sim.http import SimError, Upload

BRACKETS = re.compile(r"(?P<name>[^\[\]]+)(?:\[(?P<key>[^\[\]]*)\])?")


def decode_json(raw: bytes) -> Any:
    """The JSON body ({} when empty), or its text when it is not JSON (recorded, then answered 400)."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def is_form(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "multipart/form-data"


def decode_form(raw: bytes, content_type: str) -> dict[str, Any]:
    """The fields of a multipart/form-data body; SimError 400 when it cannot be read."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    if not message.is_multipart() or message.defects:
        raise SimError(400, "The multipart/form-data body could not be parsed.")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or not (match := BRACKETS.fullmatch(name)):
            raise SimError(400, "Every form part needs a name.")
        _add(fields, match["name"], match["key"], _value(part))
    if isinstance(fields.get("sim"), str):
        try:
            fields["sim"] = json.loads(fields["sim"])
        except ValueError:
            raise SimError(400, '"sim" must be a JSON object of directives.') from None
    return fields


def _value(part: Message) -> Any:
    data = part.get_payload(decode=True) or b""
    filename = part.get_filename()
    if filename is not None:
        return Upload(filename, part.get_content_type(), data)
    return data.decode(part.get_content_charset() or "utf-8", errors="replace")


def _add(fields: dict[str, Any], name: str, key: str | None, value: Any) -> None:
    if key:  # name[key]: an object
        target = fields.setdefault(name, {})
        if not isinstance(target, dict):
            raise SimError(400, f"Form field {name} is both a value and an object.")
        target[key] = value
    elif key == "" or name in fields:  # name[] or a repeated name: a list
        existing = fields.get(name, [])
        fields[name] = [*(existing if isinstance(existing, list) else [existing]), value]
    else:
        fields[name] = value


def summary(body: Any) -> Any:
    """What /_sim/requests shows of a body: files by name, type and size instead of their bytes."""
    if isinstance(body, Upload):
        return {"filename": body.filename, "content_type": body.content_type, "size": len(body.data)}
    if isinstance(body, dict):
        return {k: summary(v) for k, v in body.items()}
    if isinstance(body, list):
        return [summary(v) for v in body]
    return body
