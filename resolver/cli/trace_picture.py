"""The lecture's picture of an iterated lookup, drawn from the engine's trace events.

`resolver trace NAME --svg FILE` / `--html FILE`: the stub, the resolver and every server
asked stand as columns; numbered arrows run in the order things happened, each with what
was asked or answered and the round-trip time. Lookups nested inside the walk (root
priming, addresses of glueless name servers) sit on a shaded band, failures are red,
and steps the cache spared are marked. Rules:

- Built only from `TraceEvent` values (`arrows_of` is a pure function of them), so a
  fake clock gives the same picture every time.
- Self-contained: inline SVG with generic font families, no scripts, no external
  fonts, styles or images; the HTML page wraps the same SVG with a legend.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from resolver.cli.trace_words import record_rdata, record_type
from resolver.engine.delegation import CutSource
from resolver.engine.events import (
    CacheAnswered,
    CnameFollowed,
    QueryFailed,
    QuerySent,
    ReferralFollowed,
    ReplyReceived,
    ResolutionFinished,
    ResolutionStarted,
    TraceEvent,
    ZoneCutChosen,
)

STUB = "stub"
RESOLVER = "resolver"


class ArrowKind(enum.Enum):
    """What an arrow stands for; each kind has its own colour and line."""

    ASK = "ask"  #: a query (resolver to server, or the stub's question)
    REPLY = "reply"  #: a reply that moved the walk on
    ANSWER = "answer"  #: the final answer, back to the stub
    FAILURE = "failure"  #: a timeout, an unreachable server, a lame reply
    CACHE = "cache"  #: a step answered from the cache: no packet at all
    NOTE = "note"  #: a decision of the resolver itself (zone cut, CNAME restart)


@dataclass(frozen=True, slots=True, kw_only=True)
class Column:
    """One participant: the stub, the resolver, or one server address."""

    key: str
    title: str
    subtitle: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrow:
    """One numbered step from column `source` to column `target` (equal for a note)."""

    number: int
    source: str
    target: str
    label: str
    kind: ArrowKind
    depth: int
    rtt_ms: float | None = None
    #: The nested lookup this step belongs to ("root priming", "lookup ns.hosting.net. A").
    band: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Picture:
    title: str
    columns: tuple[Column, ...]
    arrows: tuple[Arrow, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PictureFiles:
    """Where `resolver trace` writes its pictures (None: not asked for)."""

    svg: Path | None = None
    html: Path | None = None


def arrows_of(events: Sequence[TraceEvent], qname: str, qtype: str) -> Picture:
    """The picture of one traced resolution of `qname` `qtype`."""
    drawing = _Drawing()
    drawing.add(STUB, RESOLVER, f"{qname} {qtype}?  (RD=1)", ArrowKind.ASK, 0)
    for event in events:
        drawing.take(event)
    title = f"Iterated lookup of {qname} {qtype}"
    return Picture(title=title, columns=tuple(drawing.columns.values()),
                   arrows=tuple(drawing.arrows))


class _Drawing:
    """The columns and numbered arrows so far, while the events are read in order."""

    def __init__(self) -> None:
        self.columns: dict[str, Column] = {
            STUB: Column(key=STUB, title="stub resolver", subtitle="(dig, your program)"),
            RESOLVER: Column(key=RESOLVER, title="resolver", subtitle="(this one: iterates)"),
        }
        self.arrows: list[Arrow] = []
        self._bands: dict[int, str] = {}  # depth -> the nested lookup under way there
        self._pending: dict[int, QuerySent] = {}  # depth -> its query awaiting a reply
        self._ends_of_reply: dict[int, int] = {}  # depth -> index in arrows of its last reply

    def add(self, source: str, target: str, label: str, kind: ArrowKind, depth: int,
            rtt_ms: float | None = None) -> None:
        band = self._bands.get(depth, "") if depth else ""
        self.arrows.append(Arrow(number=len(self.arrows) + 1, source=source, target=target,
                                 label=label, kind=kind, depth=depth, rtt_ms=rtt_ms, band=band))

    def take(self, event: TraceEvent) -> None:
        """Draw what `event` adds to the picture; events that add nothing are passed over."""
        if isinstance(event, ResolutionStarted) and event.depth > 0:
            self._bands[event.depth] = (
                "root priming (. NS)" if event.purpose == "root priming"
                else f"lookup {event.qname} {event.qtype}: {event.purpose}")
        elif (isinstance(event, ZoneCutChosen) and event.source is CutSource.CACHE
              and event.zone != "."):
            label = f"zone cut {event.zone} known from the cache: start there"
            self.add(RESOLVER, RESOLVER, label, ArrowKind.CACHE, event.depth)
        elif isinstance(event, CacheAnswered):
            self.add(RESOLVER, RESOLVER, f"from the cache: {event.qname} {event.qtype} "
                     f"({event.what})", ArrowKind.CACHE, event.depth)
        elif isinstance(event, QuerySent):
            self._sent(event)
        elif isinstance(event, ReplyReceived):
            self._replied(event)
        elif isinstance(event, QueryFailed):
            self.add(self._asked(event.depth, event.address), RESOLVER,
                     f"no reply: {_short(event.error)}", ArrowKind.FAILURE, event.depth)
        elif isinstance(event, ReferralFollowed):
            self._relabel_reply(event.depth, _referral_label(event))
        elif isinstance(event, CnameFollowed):
            self._relabel_reply(event.depth, f"CNAME {event.to_name}")
            self.add(RESOLVER, RESOLVER, f"restart at {event.to_name}", ArrowKind.NOTE,
                     event.depth)
        elif isinstance(event, ResolutionFinished):
            self._finished(event)

    def _asked(self, depth: int, address: str) -> str:
        """The column of the server last asked at `depth` (the event's own as a fallback)."""
        sent = self._pending.get(depth)
        return sent.address if sent is not None else address

    def _sent(self, event: QuerySent) -> None:
        self._pending[event.depth] = event
        if event.address not in self.columns:
            self.columns[event.address] = Column(key=event.address, title=event.server_name,
                                                 subtitle=f"{event.address}  zone {event.zone}")
        self.add(RESOLVER, event.address, f"{event.qname} {event.qtype}?", ArrowKind.ASK,
                 event.depth)

    def _replied(self, event: ReplyReceived) -> None:
        failed = event.kind in ("lame", "server-error")
        label = f"LAME: {event.detail or event.kind}" if failed else _reply_label(event)
        self.add(self._asked(event.depth, event.address), RESOLVER, label,
                 ArrowKind.FAILURE if failed else ArrowKind.REPLY, event.depth,
                 rtt_ms=event.rtt_ms)
        self._ends_of_reply[event.depth] = len(self.arrows) - 1

    def _relabel_reply(self, depth: int, label: str) -> None:
        """Say what the last reply at `depth` turned out to be (a referral, a CNAME)."""
        index = self._ends_of_reply.pop(depth, None)
        if index is None:
            return
        old = self.arrows[index]
        self.arrows[index] = Arrow(number=old.number, source=old.source, target=old.target,
                                   label=label, kind=old.kind, depth=old.depth,
                                   rtt_ms=old.rtt_ms, band=old.band)

    def _finished(self, event: ResolutionFinished) -> None:
        found = [record_rdata(rr) for rr in event.answer if record_type(rr) == event.qtype]
        result = ", ".join(found) if found else event.rcode
        if event.depth > 0:  # a nested lookup: its result, and its band ends
            if event.qtype != "NS":
                self.add(RESOLVER, RESOLVER, f"=> {event.qname} {result}", ArrowKind.NOTE,
                         event.depth)
            self._bands.pop(event.depth, None)
            return
        if event.rcode != "NOERROR" and not found:
            result = event.rcode + (f" ({_short(event.reason)})" if event.reason else "")
        kind = ArrowKind.FAILURE if event.rcode == "SERVFAIL" else ArrowKind.ANSWER
        self.add(RESOLVER, STUB, f"{event.qtype} {result}", kind, 0)


def _referral_label(event: ReferralFollowed) -> str:
    """"referral to ZONE", naming a name server when none of them came with glue."""
    glueless = [e.split(" ", 1)[0] for e in event.nameservers if " " not in e.strip()]
    label = f"referral to {event.to_zone}"
    if glueless and len(glueless) == len(event.nameservers):
        label += f" (no glue for {glueless[0]})"
    return label


def _reply_label(event: ReplyReceived) -> str:
    if event.kind == "answer":
        count = event.answer_count
        records = "record" if count == 1 else "records"
        return f"answer ({'AA' if event.aa else 'not AA'}, {count} {records})"
    if event.kind in ("nxdomain", "nodata"):
        return event.kind.upper()
    return event.kind + (f": {event.detail}" if event.detail else "")


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."




# -- drawing ---------------------------------------------------------------------------

_COLUMN_WIDTH = 190
_MARGIN = 30
_HEAD = 92
_ROW = 38
_COLOURS = {
    ArrowKind.ASK: "#1f5fbf",
    ArrowKind.REPLY: "#2e7d32",
    ArrowKind.ANSWER: "#2e7d32",
    ArrowKind.FAILURE: "#c62828",
    ArrowKind.CACHE: "#8e24aa",
    ArrowKind.NOTE: "#555555",
}
#: Width of one character of the 11-pixel monospace labels (DejaVu Sans Mono: 0.602 em).
_LABEL_CHAR = 6.7
_FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
_MONO = "font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\""


def render_svg(picture: Picture) -> str:
    """The picture as a standalone SVG document."""
    layout = _Layout.of(picture)
    parts = _svg_head(picture.title, layout)
    parts += _band_shapes(picture.arrows, layout)
    for column in picture.columns:
        parts += _column_shapes(column, layout)
    for arrow in picture.arrows:
        parts += _arrow_shapes(arrow, layout)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where things go: the picture's size and each column's place from the left."""

    width: int
    height: int
    index: dict[str, int]  # column key -> its place, 0 for the stub

    @classmethod
    def of(cls, picture: Picture) -> _Layout:
        return cls(width=2 * _MARGIN + len(picture.columns) * _COLUMN_WIDTH,
                   height=_HEAD + (len(picture.arrows) + 1) * _ROW + _MARGIN,
                   index={column.key: i for i, column in enumerate(picture.columns)})

    def centre(self, key: str) -> float:
        """The x of a column's lifeline."""
        return _MARGIN + self.index[key] * _COLUMN_WIDTH + _COLUMN_WIDTH / 2


def _row(arrow_number: int) -> int:
    """The y of the arrow with that number."""
    return _HEAD + arrow_number * _ROW


def _svg_head(title: str, layout: _Layout) -> list[str]:
    """The opening tag, the title, one arrow head per colour, the background, the caption."""
    width, height = layout.width, layout.height
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        '<defs>' + "".join(
            f'<marker id="head-{kind.value}" viewBox="0 0 10 10" refX="9" refY="5" '
            f'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
            for kind, colour in _COLOURS.items()) + '</defs>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{_MARGIN}" y="24" font-size="17" font-weight="bold" {_FONT}>'
        f"{escape(title)}</text>",
    ]


def _band_runs(arrows: Sequence[Arrow]) -> list[tuple[str, int, int, int]]:
    """(band, first and last arrow number, depth) of each run of steps on the same band."""
    runs: list[tuple[str, int, int, int]] = []
    for arrow in arrows:
        if not arrow.band:
            continue
        if runs and runs[-1][0] == arrow.band and runs[-1][2] == arrow.number - 1:
            band, first, _, depth = runs[-1]
            runs[-1] = (band, first, arrow.number, depth)
        else:
            runs.append((arrow.band, arrow.number, arrow.number, arrow.depth))
    return runs


def _band_shapes(arrows: Sequence[Arrow], layout: _Layout) -> list[str]:
    """The shaded bands behind the nested lookups, drawn first so that arrows cross them."""
    parts: list[str] = []
    left = _MARGIN + _COLUMN_WIDTH * 1 + 8
    for band, first, last, depth in _band_runs(arrows):
        top = _row(first) - _ROW / 2 - 8
        bottom = _row(last) + _ROW / 2 - 6
        inset = 6 * (depth - 1)
        band_width = layout.width - left - _MARGIN + 8 - inset
        parts.append(f'<rect x="{left + inset}" y="{top}" width="{band_width}" '
                     f'height="{bottom - top}" rx="6" fill="#fff6d5" stroke="#e0c060" '
                     'stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{layout.width - _MARGIN - 4}" y="{top + 13}" font-size="11" '
                     f'text-anchor="end" fill="#7a5c00" {_FONT}>nested: {escape(band)}</text>')
    return parts


def _column_shapes(column: Column, layout: _Layout) -> list[str]:
    """A column's head and its lifeline."""
    x = layout.centre(column.key)
    return [
        f'<rect x="{x - _COLUMN_WIDTH / 2 + 6}" y="36" width="{_COLUMN_WIDTH - 12}" '
        'height="46" rx="6" fill="#eef3fb" stroke="#1f5fbf"/>',
        f'<text x="{x}" y="55" font-size="12" font-weight="bold" '
        f'text-anchor="middle" {_MONO}>{escape(_short(column.title, 26))}</text>',
        f'<text x="{x}" y="72" font-size="9" text-anchor="middle" fill="#444" '
        f'{_FONT}>{escape(_short(column.subtitle, 38))}</text>',
        f'<line x1="{x}" y1="82" x2="{x}" y2="{layout.height - _MARGIN}" '
        'stroke="#b0b8c8" stroke-dasharray="3 4"/>',
    ]


def _arrow_shapes(arrow: Arrow, layout: _Layout) -> list[str]:
    """One numbered step: a note (a numbered dot) or an arrow with its label."""
    y = _row(arrow.number)
    colour = _COLOURS[arrow.kind]
    x1, x2 = layout.centre(arrow.source), layout.centre(arrow.target)
    if x1 == x2:
        return [
            f'<circle cx="{x1}" cy="{y}" r="11" fill="{colour}"/>',
            f'<text x="{x1}" y="{y + 4}" font-size="11" font-weight="bold" '
            f'text-anchor="middle" fill="#fff" {_FONT}>{arrow.number}</text>',
            f'<text x="{x1 + 16}" y="{y + 4}" font-size="11" fill="{colour}" '
            f'font-style="italic" {_MONO}>{escape(arrow.label)}</text>',
        ]
    dash = ' stroke-dasharray="6 4"' if arrow.kind is ArrowKind.FAILURE else ""
    shorten = 4 if x2 > x1 else -4
    # The number sits at the arrow's tail, so that the head stays visible.
    tail = x1 + 14 if x2 > x1 else x1 - 14
    parts = [
        f'<line x1="{x1}" y1="{y}" x2="{x2 - shorten}" y2="{y}" stroke="{colour}" '
        f'stroke-width="2"{dash} marker-end="url(#head-{arrow.kind.value})"/>',
        f'<circle cx="{tail}" cy="{y}" r="10" fill="{colour}"/>',
        f'<text x="{tail}" y="{y + 4}" font-size="10" font-weight="bold" '
        f'text-anchor="middle" fill="#fff" {_FONT}>{arrow.number}</text>',
    ]
    rtt = f"{arrow.rtt_ms:.1f} ms" if arrow.rtt_ms is not None else ""
    main, _, rest = arrow.label.partition("  ")
    extra = "  ".join(part for part in (rest, rtt) if part)
    return parts + _arrow_label(main, extra, x1, x2, y, colour)


def _arrow_label(label: str, extra: str, x1: float, x2: float, y: float,
                 colour: str) -> list[str]:
    """The text of one arrow, kept clear of its number and of the lifelines it spans.

    It sits above the line, between the numbered tail and the head: left-aligned after
    the number when the arrow points right, right-aligned before the number when it
    points left (a reply). What does not fit there goes beside it: "(RD=1)" under the
    line, a reply's RTT past its number, on the far side of the server's lifeline.
    """
    span = abs(x2 - x1) - 30 - 12  # the number's circle at one end, the head at the other
    text = f"{label}  {extra}" if extra else label
    split = bool(extra) and len(text) * _LABEL_CHAR > span
    placed: list[tuple[str, float, float, str]] = []  # text, x, y, anchor
    if x2 > x1:
        placed.append((label if split else text, x1 + 30, y - 6, "start"))
        if split:
            placed.append((extra, x1 + 30, y + 15, "start"))
    else:
        shown = label if split else text
        if x1 - 28 - len(shown) * _LABEL_CHAR >= _MARGIN / 2:
            placed.append((shown, x1 - 28, y - 6, "end"))
        else:  # it would leave the picture on the left: start it after the head
            placed.append((shown, x2 + 16, y - 6, "start"))
        if split:
            placed.append((extra, x1 + 8, y + 4, "start"))
    return [f'<text x="{x}" y="{line_y}" font-size="11" text-anchor="{anchor}" '
            f'fill="{colour}" {_MONO}>{escape(line)}</text>' for line, x, line_y, anchor in placed]


_LEGEND = (
    ("ask", ArrowKind.ASK, "a query: the resolver asks a server (RD=0), the stub asks us (RD=1)"),
    ("reply", ArrowKind.REPLY, "a reply: a referral, a CNAME or the answer, with its RTT"),
    ("failure", ArrowKind.FAILURE, "no usable reply: timeout, unreachable or lame server"),
    ("cache", ArrowKind.CACHE, "taken from the cache: no packet sent"),
    ("note", ArrowKind.NOTE, "the resolver's own step: restart at a CNAME, an address found"),
)


def render_html(picture: Picture, text_trace: Sequence[str] = ()) -> str:
    """A self-contained page: the SVG, a legend, and the text trace under it."""
    legend = "".join(
        f'<li><span style="color:{_COLOURS[kind]};font-weight:bold">&#9632; {name}</span> '
        f"{escape(meaning)}</li>" for name, kind, meaning in _LEGEND)
    legend += ('<li><span style="background:#fff6d5;border:1px dashed #e0c060">&nbsp;nested'
               "&nbsp;</span> a lookup inside the walk: root priming, or the address of a name "
               "server that came without glue</li>")
    trace = ""
    if text_trace:
        trace = "<h2>The trace as text</h2><pre>" + escape("\n".join(text_trace)) + "</pre>"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(picture.title)}</title>"
        "<style>body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:16px;"
        "background:#fff;color:#222}ul{list-style:none;padding:0}li{margin:2px 0}"
        "pre{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:12px;"
        "background:#f6f6f6;padding:8px}</style></head><body>\n"
        + render_svg(picture)
        + f"<h2>Legend</h2><ul>{legend}</ul>\n"
        "<p>Arrows are numbered in the order the engine took the steps; the resolver starts "
        "each walk at the closest zone cut it knows.</p>\n"
        + trace + "</body></html>\n"
    )


def write_pictures(files: PictureFiles, events: Sequence[TraceEvent], qname: str,
                   qtype: str, *, text_trace: Sequence[str] = ()) -> str:
    """Write the SVG and/or the HTML page of one traced name (the page with the trace as
    text under the picture); '' or the one-line error."""
    picture = arrows_of(events, qname, qtype)
    for path, text in ((files.svg, render_svg(picture)),
                       (files.html, render_html(picture, text_trace))):
        if path is None:
            continue
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            return f"cannot write {path}: {exc.strerror or exc}"
    return ""
