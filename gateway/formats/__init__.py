"""The wire formats, one module each (chat, responses, anthropic, gemini), and which one a target is sent.

Each module holds its format whole: the client side, the upstream side, its usage conventions, and its
translation to and from OpenAI chat, the pivot (``common`` holds what the translators share, ``base`` what
the formats share). A new format is a new module here (and its endpoint in gateway.endpoints); a new
provider kind is one line below.
"""

from gateway.catalog import Target
from gateway.formats.anthropic import ANTHROPIC
from gateway.formats.base import WireFormat
from gateway.formats.chat import CHAT
from gateway.formats.gemini import GEMINI

# Provider kind → the format its upstreams speak; a kind not listed is taken as OpenAI-compatible.
KIND_FORMATS: dict[str, WireFormat] = {"openai": CHAT, "anthropic": ANTHROPIC, "gemini": GEMINI}


def upstream_format(target: Target, client: WireFormat) -> WireFormat:
    """The format ``target`` gets a call in from a client speaking ``client``: that one when the target takes
    it natively (an OpenAI provider marked *supports Responses* takes Responses calls), else its kind's."""
    spoken = KIND_FORMATS.get(target.kind, CHAT)
    return client if client.spoken_by(target, spoken) else spoken
