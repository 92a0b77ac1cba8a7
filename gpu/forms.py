"""Small request bodies of the model API: JSON objects, or multipart forms read whole (fields and files).

Large uploads stream through gpu.files_api; a job's or a media call's form (a prompt, an image or a
recording) is read whole, within the body limit, and parsed with python-multipart.
"""

from dataclasses import dataclass

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from gateway.errors import invalid_request
from gateway.http import Receive, Scope, header, parse_json_object, read_body


@dataclass(slots=True)
class Form:
    """A multipart/form-data body: text fields, and file parts by field name (``image[]`` is ``image``)."""

    fields: dict[str, str]
    files: dict[str, list[bytes]]


class _Parts:
    """The parts of a multipart body as python-multipart finds them: each part's headers and bytes."""

    def __init__(self) -> None:
        self.parts: list[tuple[dict[bytes, bytes], bytearray]] = []
        self._name = self._value = b""

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._header_name,
                "on_header_value": self._header_value, "on_header_end": self._header_end, "on_part_data": self._data}

    def _begin(self) -> None:
        self.parts.append(({}, bytearray()))

    def _header_name(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self.parts[-1][0][self._name.lower()] = self._value
        self._name = self._value = b""

    def _data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1][1].extend(data[start:end])


def form_parse(raw: bytes, content_type: str) -> Form:
    """Parse a whole form (the body was read within its limit); a repeated text field keeps its last value."""
    essence, options = parse_options_header(content_type)
    if essence != b"multipart/form-data" or not options.get(b"boundary"):
        raise invalid_request("Send the request as multipart/form-data.", code="invalid_content_type")
    found = _Parts()
    parser = MultipartParser(options[b"boundary"], found.callbacks())
    try:
        parser.write(raw)
        parser.finalize()
    except FormParserError as exc:
        raise invalid_request(f"The multipart body is malformed: {exc}", code="invalid_multipart") from None
    form = Form(fields={}, files={})
    for headers, data in found.parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace").removesuffix("[]")
        if b"filename" in disposition:
            form.files.setdefault(name, []).append(bytes(data))
            continue
        try:
            form.fields[name] = data.decode()
        except UnicodeDecodeError:
            raise invalid_request(f"The form field `{name}` is not UTF-8.", param=name) from None
    return form


async def body_read(scope: Scope, receive: Receive, *, limit: int) -> tuple[dict, dict[str, list[bytes]]]:
    """The body's fields (a JSON object, or a form's text fields) and its files (none for JSON)."""
    raw = await read_body(receive, limit=limit)
    content_type = header(scope, b"content-type") or ""
    if parse_options_header(content_type)[0] != b"multipart/form-data":
        return parse_json_object(raw), {}
    form = form_parse(raw, content_type)
    return form.fields, form.files
