"""Names in wire form inside a message: read and validated in linear time, and written in
presentation form.

A compression pointer must go strictly back, before the start of the name (or suffix) being
read (RFC 1035 §4.1.4); a name has at most 255 octets and a bounded number of pointer hops;
every suffix already validated is remembered (`KnownSuffixes`), so no octet of a message is
walked as part of a name more than a constant number of times. No recursion is used, so no
input can raise RecursionError. The presentation form escapes what RFC 1035 §5.1 asks, so a
dot inside a label never splits it.
"""

from __future__ import annotations

import re

from resolver.dns.header import HEADER_OCTETS
from resolver.dns.malformed import MalformedMessage
from resolver.dns.names import MAX_NAME_OCTETS

__all__ = [
    "MAX_LABELS",
    "MAX_POINTER_HOPS",
    "KnownSuffixes",
    "follow_pointers",
    "presentation",
    "presentation_as_sent",
    "read_name",
    "scan_labels",
    "scan_name",
    "skip_name",
]

#: Follows from MAX_NAME_OCTETS: every non-root label costs at least two octets.
MAX_LABELS = 127
#: Every hop that does not land on another pointer is followed by at least one label, so a
#: name never needs more hops than this; longer chains are pointers to pointers, which no
#: encoder emits and which would let a name cost more work than its length.
MAX_POINTER_HOPS = MAX_LABELS + 1

# Error phrases shared by several checks.
_PAST_END = "name runs past the end of the message"
_TOO_LONG = "name longer than 255 octets"
_TOO_MANY_HOPS = "too many compression pointers in a name"
_BAD_LABEL = "label longer than 63 octets or unknown label type"

# Presentation form (RFC 1035 §5.1): printable ASCII other than '.' and '\' stands for
# itself, a '.' or '\' inside a label is written '\.' or '\\' (as dig and Unbound write
# them), everything else, space included, becomes \DDD, so the text is unambiguous.
_PLAIN_DOTTED = re.compile(rb"[\x21-\x5b\x5d-\x7e]*")
_ESCAPED = tuple(
    "\\." if c == 0x2E else "\\\\" if c == 0x5C
    else chr(c) if 0x21 <= c <= 0x7E else f"\\{c:03d}"
    for c in range(256)
)


def _bad_pointer(target: int, segment_start: int, size: int) -> MalformedMessage:
    """Explain why a compression pointer was refused (RFC 1035 §4.1.4)."""
    if target >= size:
        return MalformedMessage("compression pointer past the end of the message")
    if target >= segment_start:
        return MalformedMessage("compression pointer does not point to a prior name")
    return MalformedMessage("compression pointer into the header")


def _bad_suffix(first_target: int, segment_start: int, octets: int) -> MalformedMessage:
    """Explain why a name cannot end with a suffix validated before: its first pointer does
    not go back from here, or with it the name is too long or takes too many hops."""
    if first_target >= segment_start:
        return MalformedMessage("compression pointer does not point to a prior name")
    if octets >= MAX_NAME_OCTETS:
        return MalformedMessage(_TOO_LONG)
    return MalformedMessage(_TOO_MANY_HOPS)


def read_name(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """Decode and validate the name at `pos`; return its labels and the offset after it."""
    size = len(data)
    labels: list[bytes] = []
    segment_start = pos  # pointers must land strictly before this
    end = -1  # offset after the name in its original position, once known
    octets = 1  # the root label
    hops = 0
    while True:
        if pos >= size:
            raise MalformedMessage(_PAST_END)
        length = data[pos]
        if length == 0:
            break
        if length < 0x40:
            after = pos + 1 + length
            if after > size:
                raise MalformedMessage(_PAST_END)
            octets += length + 1
            if octets > MAX_NAME_OCTETS:
                raise MalformedMessage(_TOO_LONG)
            labels.append(data[pos + 1 : after])
            pos = after
        elif length >= 0xC0:
            if pos + 1 >= size:
                raise MalformedMessage(_PAST_END)
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= segment_start or target < HEADER_OCTETS:
                raise _bad_pointer(target, segment_start, size)
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise MalformedMessage(_TOO_MANY_HOPS)
            if end < 0:
                end = pos + 2
            segment_start = pos = target
        else:
            raise MalformedMessage(_BAD_LABEL)  # see skip_name
    return labels, (pos + 1 if end < 0 else end)


#: Validated suffixes: offset -> (label octets from there on, pointer hops from there on,
#: target of the first pointer after that offset or -1 when the root comes first).
KnownSuffixes = dict[int, tuple[int, int, int]]


def skip_name(data: bytes, pos: int, known: KnownSuffixes) -> int:
    """Validate the name at `pos` and return the offset after it (in its original position).

    The labels at the name's own position are walked by a tight loop; each octet of the
    message is read there once, since names in sections follow one another. Pointers are
    followed by `follow_pointers`, which records what it validated in `known`.
    """
    start = pos
    limit = pos + MAX_NAME_OCTETS - 1  # label octets before the root at most 254
    try:
        length = data[pos]
        while 0 < length < 0x40:
            pos += length + 1
            if pos > limit:
                raise MalformedMessage(_TOO_LONG)
            length = data[pos]
    except IndexError:
        raise MalformedMessage(_PAST_END) from None
    if length == 0:
        return pos + 1
    if length < 0xC0:
        # 0x40-0x7F: labels over 63 octets or extended label types (RFC 6891 §5);
        # 0x80-0xBF: reserved (RFC 1035 §4.1.4).
        raise MalformedMessage(_BAD_LABEL)
    try:
        target = ((length & 0x3F) << 8) | data[pos + 1]
    except IndexError:
        raise MalformedMessage(_PAST_END) from None
    suffix = known.get(target)
    if suffix is not None and target < start:
        # A pointer to a known suffix, as dnslib and most encoders write: only the length can
        # still fail (see the owner fast path in _scan_records for why the hops cannot).
        if pos - start + suffix[0] >= MAX_NAME_OCTETS:
            raise MalformedMessage(_TOO_LONG)
    else:
        follow_pointers(data, pos, start, pos - start, known)
    return pos + 2


def follow_pointers(
    data: bytes, pos: int, segment_start: int, octets: int, known: KnownSuffixes
) -> None:
    """Validate the rest of a name from the compression pointer at `pos`.

    Every label or pointer visited here is recorded in `known` with the suffix it starts, and
    any recorded offset met again finishes the name at once, so each octet is visited here at
    most once per message however many later names point at it. A recorded suffix is valid
    from any entry point at or after the start of its run, provided its first pointer still
    lands before the current segment, which is checked.
    """
    size = len(data)
    hops = 0
    # Offsets visited, with octets and hops counted before each and the number of their run
    # (the labels between two hops); run_ends[n] is what run n led to: a pointer target, or -1
    # for the root. Run 0 is the name's own labels, which are not recorded.
    trail: list[tuple[int, int, int, int]] = []
    run_ends: list[int] = []
    complete = False
    while not complete:
        # `pos` holds a compression pointer (RFC 1035 §4.1.4).
        if pos + 1 >= size:
            raise MalformedMessage(_PAST_END)
        target = ((data[pos] & 0x3F) << 8) | data[pos + 1]
        if target >= segment_start or target < HEADER_OCTETS:
            raise _bad_pointer(target, segment_start, size)
        hops += 1
        if hops > MAX_POINTER_HOPS:
            raise MalformedMessage(_TOO_MANY_HOPS)
        run_ends.append(target)
        run = len(run_ends)
        segment_start = pos = target
        while True:
            suffix = known.get(pos)
            if suffix is not None:
                octets += suffix[0]
                hops += suffix[1]
                if (suffix[2] >= segment_start or octets >= MAX_NAME_OCTETS
                        or hops > MAX_POINTER_HOPS):
                    raise _bad_suffix(suffix[2], segment_start, octets)
                run_ends.append(suffix[2])
                complete = True
                break
            if pos >= size:
                raise MalformedMessage(_PAST_END)
            length = data[pos]
            if length == 0:
                run_ends.append(-1)
                complete = True
                break
            trail.append((pos, octets, hops, run))
            if length < 0x40:
                octets += length + 1
                if octets >= MAX_NAME_OCTETS:
                    raise MalformedMessage(_TOO_LONG)
                pos += length + 1
            elif length >= 0xC0:
                break  # the next hop
            else:
                raise MalformedMessage(_BAD_LABEL)
    for offset, octets_before, hops_before, run_number in trail:
        known[offset] = (octets - octets_before, hops - hops_before, run_ends[run_number])


def presentation(labels: list[bytes]) -> str:
    """Lower-cased presentation form with a trailing dot; "." for the root."""
    if not labels:
        return "."
    joined = b".".join(labels).lower()  # ASCII-only case folding, as DNS requires
    if _PLAIN_DOTTED.fullmatch(joined) and joined.count(b".") == len(labels) - 1:
        return joined.decode("ascii") + "."
    escaped = _ESCAPED
    return "".join("".join([escaped[c] for c in label.lower()]) + "." for label in labels)


def presentation_as_sent(labels: list[bytes]) -> str:
    """Presentation form with a trailing dot and the letter case the labels have."""
    if not labels:
        return "."
    joined = b".".join(labels)
    if _PLAIN_DOTTED.fullmatch(joined.lower()) and joined.count(b".") == len(labels) - 1:
        return joined.decode("ascii") + "."
    escaped = _ESCAPED
    return "".join("".join([escaped[c] for c in label]) + "." for label in labels)


def scan_labels(data: bytes, offset: int) -> tuple[list[bytes], int]:
    """Validate the name at `offset`; return its labels (octets as sent) and the offset after
    it. Pointers must go strictly back (RFC 1035 §4.1.4), so none reaches past `data`."""
    if offset < 0:
        raise MalformedMessage("name offset outside the message")
    return read_name(data, offset)


def scan_name(data: bytes, offset: int) -> tuple[str, int]:
    """Validate the name at `offset`; return its presentation form and the offset after it."""
    if type(data) is not bytes:
        data = bytes(data)
    if offset < 0:
        raise MalformedMessage("name offset outside the message")
    labels, end = read_name(data, offset)
    return presentation(labels), end
