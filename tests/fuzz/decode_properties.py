"""What every message the decoder accepts must satisfy: shared by the property tests and
the coverage-guided fuzz target."""

from __future__ import annotations

from dataclasses import replace

from resolver.dns import decoding, encoding, wire
from resolver.dns.rdata_wire import name_labels


def check_decoded_message_round_trips(message: wire.Message) -> None:
    """Every decoded message encodes again, and the encoding decodes to the same message.

    Records the decoder dropped as malformed are not in the message, so nothing is dropped
    the second time. Names must read back as wire labels (no escape is ambiguous).
    """
    for section in (message.answer, message.authority, message.additional):
        for record in section:
            name_labels(record.name)  # ValueError: the text does not spell wire labels
    data = encoding.encode(message)
    again = decoding.decode(data)
    if again.tc and not message.tc:
        return  # our compression differed and the result outgrew 65535 octets: truncated
    expected = replace(message, malformed=())
    if again != expected:
        raise AssertionError(f"re-decoded message differs: {again!r} != {expected!r}")
