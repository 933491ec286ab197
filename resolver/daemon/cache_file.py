"""The cache file: the record cache written to disk and read back, so a restart keeps it.

One format for `--cache-file` (saved on SIGTERM and every `--cache-save-interval`
seconds, loaded before the listener answers) and for `resolver cache dump` / `resolver
cache load FILE`, as Unbound's dump_cache and load_cache share theirs. Text, one line each:

    ;resolver-cache 1 written=1712345678.250
    ;rrset answer original-ttl=3600
    www.example.	3512	IN	A	192.0.2.1
    ;rrset additional original-ttl=3600 expired-ago=40
    ns.example.	0	IN	A	192.0.2.53
    ;nxdomain nope.example. IN original-ttl=900
    example.	897	IN	SOA	ns.example. host.example. 1 7200 3600 1209600 900
    ;nodata www.example. IN AAAA original-ttl=900
    example.	897	IN	SOA	ns.example. host.example. 1 7200 3600 1209600 900
    ;end entries=4 sha256=5f0c...

- The header names the format and its version, and the wall-clock time of writing; on
  loading every TTL is lowered by the time since then (the time the process was down).
- Records are zone-file lines (owner TTL class type RDATA, `resolver.dns.record_text.exact_text`:
  presentation form for the common types, RFC 3597 §5 generic form for the rest), TTL as
  remaining when written. Each RRset keeps its trust rank (RFC 2181 §5.4.1), so a reload
  never promotes glue to answer. Entries kept for serve-stale (RFC 8767) carry how long
  ago they expired; they are loaded back only when serve-stale is on and keeps them still.
- Negative answers (RFC 2308 §5) are NXDOMAIN for a name or NODATA for a name and type,
  each with its SOA.
- The trailer counts the entries and holds the SHA-256 of every line before it: a file cut
  short or altered is refused whole. A refused file (missing, other version, truncated,
  corrupted) is one log line, and the cache stays as it was (empty at start).
- Writing goes to a temporary file in the same directory, fsync, rename (and the directory
  fsynced): a crash mid-write leaves the previous file intact.
- Several sections may follow one another (the dump of several workers): all are read.
  Lines starting with ";;" between sections, and empty lines, are comments.
- DNSSEC (RFC 4035 §4.5): an entry's header says `security=secure` or `insecure` once it
  was validated, and its RRSIGs follow its records (a negative entry's SOA is followed by
  its proof: the SOA's RRSIGs and the NSEC/NSEC3 records with theirs). So a validating
  resolver reloads secure data as secure, instead of unsigned data that would fail. Bogus
  and indeterminate data is never written.

The snapshot is taken on the event loop (the cache is not thread-safe; taking it copies no
entry), the text is made and written in a thread, and a load into a running server puts
the entries back in slices that let the loop answer between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from resolver.dns.record_text import exact_text, record_from_exact_text
from resolver.dns.wire import Rcode, Record, RRType, type_name
from resolver.dns.wire import type_from_text as _type_from_text
from resolver.dnssec.security import Security
from resolver.engine.cache import RecordCache
from resolver.engine.cache_entries import CacheSnapshot, Rank, SavedEntry, SavedNegative, SavedRRset

log = logging.getLogger("resolver")

MAGIC = ";resolver-cache"
FORMAT_VERSION = 1
#: How often a running server saves its cache (Unbound has no such timer; BIND's
#: managed-keys and PowerDNS's save intervals are in minutes too).
DEFAULT_SAVE_INTERVAL_S = 300.0
#: Entries put back into a running cache between two turns of the event loop.
RESTORE_SLICE = 2_000

_HEADER = re.compile(r"^;resolver-cache (\d+) written=(\d+(?:\.\d+)?)$")
_TRAILER = re.compile(r"^;end entries=(\d+) sha256=([0-9a-f]{64})$")
_RANKS = {rank.name.lower(): rank for rank in Rank}
#: The states written (bogus and indeterminate data never are).
_SAVED_SECURITY = {state.value: state for state in (Security.SECURE, Security.INSECURE)}
#: What may follow the SOA of a negative entry: its DNSSEC proof (RFC 4035 §3.1.3).
_PROOF_TYPES = frozenset({RRType.RRSIG, RRType.NSEC, RRType.NSEC3})


class CacheFileError(Exception):
    """A cache file that cannot be used, said in one line."""


def worker_cache_path(path: Path, index: int) -> Path:
    """The cache file of worker `index` (`--workers`): worker 0 keeps `path`, worker N
    writes `path` with ".N" appended, as their control sockets are named."""
    return path if index == 0 else path.with_name(f"{path.name}.{index}")


# -- writing ------------------------------------------------------------------------------


def format_snapshot(snapshot: CacheSnapshot, *, written_at: float) -> Iterator[str]:
    """The lines of one section (no newlines), header to trailer; `written_at` is the
    wall-clock time the snapshot was taken at."""
    digest = hashlib.sha256()
    count = 0

    def hashed(line: str) -> str:
        digest.update(line.encode("utf-8") + b"\n")
        return line

    yield hashed(f"{MAGIC} {FORMAT_VERSION} written={written_at:.3f}")
    for entry in snapshot.entries():
        for line in _entry_lines(entry):
            yield hashed(line)
        count += 1
    yield f";end entries={count} sha256={digest.hexdigest()}"


def _entry_lines(entry: SavedEntry) -> list[str]:
    left = math.floor(entry.ttl_left)
    timing = (f" expired-ago={math.ceil(-entry.ttl_left)}" if entry.ttl_left <= 0 else "")
    if entry.security is not None:
        timing += f" security={entry.security.value}"
    if isinstance(entry, SavedRRset):
        head = f";rrset {entry.rank.name.lower()} original-ttl={entry.records[0].ttl}{timing}"
        signed = (*entry.records, *entry.rrsigs)
        return [head, *(exact_text(rr.with_ttl(max(left, 0))) for rr in signed)]
    if entry.rtype is None:
        head = f";nxdomain {entry.name} {_class_text(entry.rclass)}"
    else:
        head = f";nodata {entry.name} {_class_text(entry.rclass)} {type_name(entry.rtype)}"
    return [f"{head} original-ttl={entry.soa.ttl}{timing}",
            *(exact_text(rr.with_ttl(max(left, 0))) for rr in (entry.soa, *entry.proof))]


def _class_text(rclass: int) -> str:
    return "IN" if rclass == 1 else f"CLASS{rclass}"


def write_file(path: Path, lines: Iterable[str]) -> None:
    """Write `lines` to `path` so that a crash at any point leaves the old file or the new
    one, never a part: a temporary file beside it, fsync, rename, fsync of the directory."""
    directory = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for line in lines:
                out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself made durable (not on every fs)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# -- reading ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    """An entry header read, waiting for its record lines."""

    kind: str  # "rrset", "nxdomain" or "nodata"
    line_number: int
    rank: Rank | None
    name: str
    rclass: int
    rtype: int | None
    original_ttl: int
    expired_ago: int | None
    security: Security | None = None


def parse_lines(lines: Iterable[bytes], *, now: float, max_entries: int) -> list[SavedEntry]:
    """The entries of every section of a cache file, `ttl_left` counted from wall-clock
    `now`; at most the last `max_entries`. CacheFileError on the first fault."""
    entries: deque[SavedEntry] = deque(maxlen=max(max_entries, 0))
    reader = _SectionReader(entries, now)
    number = 0
    for number, raw in enumerate(lines, 1):
        if not raw.endswith(b"\n"):
            raise CacheFileError(f"line {number} is cut short (truncated file)")
        try:
            line = raw[:-1].decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise CacheFileError(f"line {number} is not UTF-8 text") from None
        reader.feed(number, line, raw)
    if number == 0:
        raise CacheFileError("the file is empty")
    reader.finish(number)
    return list(entries)


class _SectionReader:
    """Reads sections line by line into `entries`; one instance per file."""

    def __init__(self, entries: deque[SavedEntry], now: float) -> None:
        self._entries = entries
        self._now = now
        self._digest: hashlib._Hash | None = None  # None: between sections
        self._downtime = 0.0
        self._count = 0
        self._pending: _Pending | None = None
        self._records: list[Record] = []
        self._sections = 0

    def feed(self, number: int, line: str, raw: bytes) -> None:
        if self._digest is None:
            self._between_sections(number, line)
            return
        trailer = _TRAILER.match(line)
        if trailer is not None:
            self._close_entry(number)
            if int(trailer.group(1)) != self._count:
                raise CacheFileError(f"line {number}: the trailer counts {trailer.group(1)} "
                                     f"entries, the section holds {self._count}")
            if trailer.group(2) != self._digest.hexdigest():
                raise CacheFileError(f"line {number}: checksum mismatch (corrupted file)")
            self._digest = None
            self._sections += 1
            return
        self._digest.update(raw)
        if line.startswith(";"):
            self._close_entry(number)
            self._pending = _entry_header(number, line)
            return
        if self._pending is None:
            raise CacheFileError(f"line {number}: a record outside any entry")
        try:
            self._records.append(record_from_exact_text(line))
        except ValueError as exc:
            raise CacheFileError(f"line {number}: {exc}") from None

    def finish(self, number: int) -> None:
        if self._digest is not None:
            raise CacheFileError(f"no trailer after line {number} (truncated file)")
        if self._sections == 0:
            raise CacheFileError("no section in the file")

    def _between_sections(self, number: int, line: str) -> None:
        if not line.strip() or line.startswith(";;"):
            return
        header = _HEADER.match(line)
        if header is None:
            if line.startswith(MAGIC + " "):
                version = line.split()[1]
                raise CacheFileError(f"line {number}: format version {version}, this resolver "
                                     f"reads version {FORMAT_VERSION}")
            raise CacheFileError(f"line {number}: not a resolver cache file")
        if int(header.group(1)) != FORMAT_VERSION:
            raise CacheFileError(f"line {number}: format version {header.group(1)}, this "
                                 f"resolver reads version {FORMAT_VERSION}")
        self._digest = hashlib.sha256(line.encode("utf-8") + b"\n")
        # A clock set back must not lengthen TTLs: the downtime is never negative.
        self._downtime = max(0.0, self._now - float(header.group(2)))
        self._count = 0

    def _close_entry(self, number: int) -> None:
        pending, records = self._pending, self._records
        if pending is None:
            return
        self._pending, self._records = None, []
        where = f"entry of line {pending.line_number}"
        if not records:
            raise CacheFileError(f"{where} has no record")
        ttls = {rr.ttl for rr in records}
        if len(ttls) != 1:
            raise CacheFileError(f"{where}: its records differ in TTL")
        written_left = (-pending.expired_ago if pending.expired_ago is not None
                        else float(ttls.pop()))
        left = written_left - self._downtime
        first = records[0]
        entry: SavedEntry
        if pending.kind == "rrset" and pending.rank is not None:
            # RFC 4034 §3: the RRSIGs over the RRset follow its records.
            signed: tuple[Record, ...] = ()
            if first.rtype != RRType.RRSIG:
                signed = tuple(rr for rr in records if rr.rtype == RRType.RRSIG)
                records = [rr for rr in records if rr.rtype != RRType.RRSIG]
            if any((rr.name, rr.rtype, rr.rclass) != (first.name, first.rtype, first.rclass)
                   for rr in records):
                raise CacheFileError(f"{where}: records of more than one RRset")
            if any((rr.name, rr.rclass) != (first.name, first.rclass) for rr in signed):
                raise CacheFileError(f"{where}: a signature of another name")
            entry = SavedRRset(
                records=tuple(rr.with_ttl(pending.original_ttl) for rr in records),
                rank=pending.rank, ttl_left=left, security=pending.security,
                rrsigs=tuple(rr.with_ttl(pending.original_ttl) for rr in signed),
            )
        else:
            if first.rtype != RRType.SOA or any(rr.rtype not in _PROOF_TYPES
                                                 for rr in records[1:]):
                raise CacheFileError(f"{where}: a negative answer needs one SOA, then only "
                                     "its proof (RRSIG, NSEC, NSEC3)")
            entry = SavedNegative(
                rcode=Rcode.NXDOMAIN if pending.kind == "nxdomain" else Rcode.NOERROR,
                name=pending.name, rclass=pending.rclass, rtype=pending.rtype,
                soa=first.with_ttl(pending.original_ttl), ttl_left=left,
                security=pending.security,
                proof=tuple(rr.with_ttl(pending.original_ttl) for rr in records[1:]),
            )
        self._entries.append(entry)
        self._count += 1


def _entry_header(number: int, line: str) -> _Pending:
    """An ";rrset", ";nxdomain" or ";nodata" line."""
    fields = line[1:].split()
    options: dict[str, int] = {}
    security: Security | None = None
    while fields and "=" in fields[-1]:
        key, _, value = fields.pop().partition("=")
        if key == "security" and value in _SAVED_SECURITY and security is None:
            security = _SAVED_SECURITY[value]
            continue
        if key not in ("original-ttl", "expired-ago") or not value.isdigit() or key in options:
            raise CacheFileError(f"line {number}: bad field {key}={value}")
        options[key] = int(value)
    if "original-ttl" not in options or not 0 < options["original-ttl"] <= 2**31 - 1:
        raise CacheFileError(f"line {number}: an entry needs original-ttl=SECONDS (1 or more)")
    ttl, ago = options["original-ttl"], options.get("expired-ago")
    kind, rest = (fields[0], fields[1:]) if fields else ("", [])
    try:
        if kind == "rrset" and len(rest) == 1 and rest[0] in _RANKS:
            return _Pending("rrset", number, _RANKS[rest[0]], "", 1, None, ttl, ago, security)
        if kind == "nxdomain" and len(rest) == 2:
            name, rclass = _name_and_class(rest[0], rest[1])
            return _Pending("nxdomain", number, None, name, rclass, None, ttl, ago, security)
        if kind == "nodata" and len(rest) == 3:
            name, rclass = _name_and_class(rest[0], rest[1])
            return _Pending("nodata", number, None, name, rclass, _type_from_text(rest[2]),
                            ttl, ago, security)
    except ValueError as exc:
        raise CacheFileError(f"line {number}: {exc}") from None
    raise CacheFileError(f"line {number}: not an entry header (;rrset, ;nxdomain, ;nodata)")


def _name_and_class(name_text: str, class_text: str) -> tuple[str, int]:
    # The record parser checks names and classes; a one-record probe reuses it.
    probe = record_from_exact_text(f"{name_text}\t1\t{class_text}\tA\t0.0.0.0")
    return probe.name, probe.rclass


def read_file(path: Path, *, now: float, max_entries: int) -> list[SavedEntry]:
    """The entries of the cache file at `path`; CacheFileError (one line) if unusable."""
    try:
        with open(path, "rb") as source:
            return parse_lines(source, now=now, max_entries=max_entries)
    except FileNotFoundError:
        raise CacheFileError("no such file") from None
    except IsADirectoryError:
        raise CacheFileError("it is a directory") from None
    except OSError as exc:
        raise CacheFileError(f"cannot read it: {exc.strerror or exc}") from None


# -- the running server's cache file ---------------------------------------------------------


class CacheFileKeeper:
    """Loads one server's cache from its file at start, saves it on a timer and at exit."""

    def __init__(self, cache: RecordCache, path: Path, *, interval_s: float,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.cache = cache
        self.path = path
        self.interval_s = interval_s
        self._wall_clock = wall_clock
        self._lock = asyncio.Lock()

    def load(self) -> int:
        """Fill the cache from the file before anything is served; how many entries.
        A file that cannot be used is logged in one line and left alone."""
        try:
            entries = read_file(self.path, now=self._wall_clock(),
                                max_entries=self.cache.settings.max_entries)
        except CacheFileError as exc:
            log.warning("cache file %s not loaded, starting with an empty cache: %s",
                        self.path, exc)
            return 0
        taken = self.cache.restore(entries)
        log.info("cache file %s: %d entries loaded (%d expired ones dropped)",
                 self.path, taken, len(entries) - taken)
        return taken

    async def save(self) -> bool:
        """Write the cache to the file; False (and one log line) when that failed."""
        async with self._lock:  # a timed save and the final one never overlap
            snapshot = self.cache.snapshot()
            written_at = self._wall_clock()
            started = time.monotonic()
            try:
                await asyncio.to_thread(
                    write_file, self.path, format_snapshot(snapshot, written_at=written_at))
            except OSError as exc:
                log.warning("cache file %s not written: %s", self.path, exc.strerror or exc)
                return False
            log.debug("cache file %s written in %.2f s", self.path, time.monotonic() - started)
            return True

    async def save_until(self, stop: asyncio.Event) -> None:
        """Save every `interval_s` until `stop` is set; a save under way is finished."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval_s)
            except TimeoutError:
                await self.save()


async def dump_lines(cache: RecordCache, *, wall_clock: Callable[[], float] = time.time
                     ) -> list[str]:
    """The cache as a cache file's lines (`resolver cache dump`), made off the loop."""
    snapshot = cache.snapshot()
    written_at = wall_clock()
    return await asyncio.to_thread(lambda: list(format_snapshot(snapshot, written_at=written_at)))


async def load_into(cache: RecordCache, path: Path, *,
                    wall_clock: Callable[[], float] = time.time) -> int:
    """Read a cache file in a thread and put its entries into a running cache in slices
    (`resolver cache load`); how many were taken. CacheFileError if the file is unusable."""
    entries = await asyncio.to_thread(read_file, path, now=wall_clock(),
                                      max_entries=cache.settings.max_entries)
    taken = 0
    for start in range(0, len(entries), RESTORE_SLICE):
        taken += cache.restore(entries[start:start + RESTORE_SLICE])
        await asyncio.sleep(0)  # let the listener answer between slices
    return taken
