"""Many UDP datagrams per system call: recvmmsg(2) and sendmmsg(2) for the cached fast path.

Why: a cached answer costs about half a microsecond of Python, while receiving and sending it
one datagram at a time costs two system calls and an event-loop callback each, most of the
time per query. Batching takes a whole burst in one call and sends its replies in one call.
Python's socket module has no recvmmsg, so this module calls the C library through ctypes;
where that is not possible (not Linux, no such symbols), `batching_available()` is False and
the listener keeps the event loop's datagram transport.

Rules:
- One `DatagramBatch` per bound socket, with `slots` buffers of `slot_octets` each, made once.
  The reply to the datagram in slot i is written into slot i and sent with slot i's own
  message header: the source address the kernel stored there is the destination, so a reply
  costs one copy and one length, no address conversion.
- A datagram that fills its slot may have been cut by the kernel (MSG_TRUNC): it is counted
  and handed on as read. The full handler then answers what the first `slot_octets` hold:
  FORMERR when a counted record runs past them, the usual answer when only octets after the
  counted records were cut (those are ignored anyway). No real query is that long.
- Replies leave in order, in runs of consecutive slots; a slot without a reply (a miss, which
  the caller answers later on its own path) ends a run. A send that fails skips the failing
  datagram and goes on with the next: one unreachable client must not cost the others.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
from collections.abc import Callable

__all__ = ["DatagramBatch", "batching_available"]

_MSG_DONTWAIT = 0x40
#: sizeof(struct sockaddr_in6) is 28; room to spare for any address family we bind.
_NAME_OCTETS = 32
#: struct mmsghdr on LP64 Linux: struct msghdr (56 octets) then unsigned msg_len, padded to 64.
#: msghdr: msg_name, msg_namelen (+4 pad), msg_iov, msg_iovlen, msg_control, msg_controllen,
#: msg_flags (+4 pad).
_MMSGHDR = struct.Struct("=QI4xQQQQi4xI4x")
_IOVEC = struct.Struct("=QQ")
_WORDS_PER_HEADER = _MMSGHDR.size // 4
_LENGTH_WORD = 56 // 4  # msg_len
_NAME_WORDS = _NAME_OCTETS // 4

#: An answer for one datagram: (query octets, source address key, slot) -> the reply after its
#: 2-octet id (the query's id is already in the slot), or None for no reply from this batch.
#: The key is the sender's IP address as an int (IPv4) or its 16 octets (IPv6), port left out.
Answer = Callable[[bytes, "int | bytes", int], "bytes | None"]


def _load_calls() -> tuple[Callable[..., int], Callable[..., int]] | None:
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc's included
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                         ctypes.c_void_p]
    recvmmsg.restype = ctypes.c_int
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    sendmmsg.restype = ctypes.c_int
    return recvmmsg, sendmmsg


_CALLS = _load_calls()


def batching_available() -> bool:
    """True where recvmmsg and sendmmsg can be called (Linux, 64-bit)."""
    return _CALLS is not None


def _pinned(buffer: bytearray) -> ctypes.Array[ctypes.c_char]:
    """A ctypes view of `buffer`; while it lives, the bytearray cannot be resized (and so
    never moves away from the addresses handed to the kernel)."""
    return (ctypes.c_char * len(buffer)).from_buffer(buffer)


class DatagramBatch:
    """Receive up to `slots` datagrams from a non-blocking UDP socket, reply in place, send."""

    def __init__(self, sock: socket.socket, *, slots: int = 64, slot_octets: int = 4096) -> None:
        if _CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available here")
        self._recvmmsg, self._sendmmsg = _CALLS
        self._fd = sock.fileno()
        self._family = sock.family
        self.slots = slots
        self.slot_octets = slot_octets
        self.truncated = 0  #: datagrams that filled their slot (perhaps cut short)
        self.send_failures = 0  #: replies the kernel refused (each skipped, the rest sent)
        self._data = bytearray(slots * slot_octets)
        self._names = bytearray(slots * _NAME_OCTETS)
        self._iovecs = bytearray(slots * _IOVEC.size)
        self._headers = bytearray(slots * _MMSGHDR.size)
        self._pins = [_pinned(b) for b in (self._data, self._names, self._iovecs, self._headers)]
        data_at, names_at, iovecs_at, headers_at = map(ctypes.addressof, self._pins)
        for slot in range(slots):
            _IOVEC.pack_into(self._iovecs, slot * _IOVEC.size, data_at + slot * slot_octets,
                             slot_octets)
            _MMSGHDR.pack_into(self._headers, slot * _MMSGHDR.size,
                               names_at + slot * _NAME_OCTETS, _NAME_OCTETS,
                               iovecs_at + slot * _IOVEC.size, 1, 0, 0, 0, 0)
        # Receiving rewrites the name lengths and sending the iovec lengths: both are reset
        # from these copies before every receive (two memcpy).
        self._fresh_headers = bytes(self._headers)
        self._fresh_iovecs = bytes(self._iovecs)
        self._headers_at = headers_at
        self._data_view = memoryview(self._data)
        self._names_view = memoryview(self._names)
        self._words = memoryview(self._headers).cast("I")  # 32-bit fields of the headers
        self._lengths = memoryview(self._iovecs).cast("Q")  # iov_base, iov_len pairs
        self._name_words = self._names_view.cast("I")
        self._ipv4 = self._family != socket.AF_INET6

    def exchange(self, answer: Answer) -> int:
        """Receive one batch, ask `answer` for each datagram, send the replies.

        Returns the number of datagrams received: 0 when none was waiting. An error of the
        socket itself (other than "nothing to read") is raised as OSError.
        """
        self._headers[:] = self._fresh_headers
        self._iovecs[:] = self._fresh_iovecs
        received = self._recvmmsg(self._fd, self._headers_at, self.slots, _MSG_DONTWAIT, None)
        if received <= 0:
            code = ctypes.get_errno()
            if received == 0 or code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(code, os.strerror(code))
        data, words, lengths = self._data_view, self._words, self._lengths
        names, name_words, ipv4 = self._names_view, self._name_words, self._ipv4
        octets = self.slot_octets
        longest = octets - 2
        run_start = 0
        for slot in range(received):
            size = words[slot * _WORDS_PER_HEADER + _LENGTH_WORD]
            if size >= octets:  # it filled its slot, so it may have been cut (MSG_TRUNC)
                self.truncated += 1
            start = slot * octets
            reply = answer(
                bytes(data[start : start + size]),
                name_words[slot * _NAME_WORDS + 1] if ipv4  # sin_addr as one integer
                else bytes(names[slot * _NAME_OCTETS + 8 : slot * _NAME_OCTETS + 24]),
                slot,
            )
            if reply is None or len(reply) > longest:  # the latter cannot happen for UDP
                if slot > run_start:
                    self._send(run_start, slot)
                run_start = slot + 1
                continue
            start = slot * octets + 2
            data[start : start + len(reply)] = reply
            lengths[slot * 2 + 1] = len(reply) + 2
        if received > run_start:
            self._send(run_start, received)
        return int(received)

    def source(self, slot: int) -> tuple[str, int] | tuple[str, int, int, int]:
        """The sender of the datagram in `slot`, as the socket module writes addresses."""
        name = self._names_view[slot * _NAME_OCTETS : (slot + 1) * _NAME_OCTETS]
        port = (name[2] << 8) | name[3]
        if self._family == socket.AF_INET6:
            (flowinfo,) = struct.unpack_from("!I", name, 4)  # network order, as ntohl gives it
            (scope,) = struct.unpack_from("=I", name, 24)
            return socket.inet_ntop(socket.AF_INET6, bytes(name[8:24])), port, flowinfo, scope
        return socket.inet_ntop(socket.AF_INET, bytes(name[4:8])), port

    def _send(self, start: int, end: int) -> None:
        size = _MMSGHDR.size
        while start < end:
            sent = self._sendmmsg(self._fd, self._headers_at + start * size, end - start, 0)
            if sent <= 0:  # the datagram at `start` failed: skip it, send the rest
                self.send_failures += 1
                start += 1
            else:
                start += sent
