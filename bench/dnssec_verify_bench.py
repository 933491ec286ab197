"""Microseconds per RRSIG verification, by algorithm (prints figures; asserts nothing).

Keys are made by `cryptography`; each round verifies one RRSIG over a two-record A RRset
with `signatures.verify_rrsig`, so the figure includes the RFC 4035 §5.3.1 checks, the
canonical form and signed data, and the signature check itself (the public-key object is
cached per key, as it is in use). Run: .venv/bin/python bench/dnssec_verify_bench.py
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from resolver.dns.wire import Record, make_record, parse_record
from resolver.dnssec.canonical import signed_data
from resolver.dnssec.keys import Dnskey
from resolver.dnssec.records import Rrsig
from resolver.dnssec.signatures import verify_rrsig

ZONE = "example.test."
NOW = 1_750_000_000
ROUNDS = 3000


def _rsa() -> tuple[int, bytes, Callable[[bytes], bytes]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    exponent = numbers.e.to_bytes(3, "big")
    public = bytes((len(exponent),)) + exponent + numbers.n.to_bytes(256, "big")
    return 8, public, lambda data: private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _p256() -> tuple[int, bytes, Callable[[bytes], bytes]]:
    private = ec.generate_private_key(ec.SECP256R1())
    point = private.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return 13, point[1:], sign


def _ed25519() -> tuple[int, bytes, Callable[[bytes], bytes]]:
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    return 15, public, private.sign


def _signed(algorithm: int, public: bytes, sign: Callable[[bytes], bytes],
            ) -> tuple[list[Record], Record, Dnskey]:
    key = Dnskey.from_rdata(ZONE, struct.pack("!HBB", 257, 3, algorithm) + public)
    rrset = [parse_record("www.example.test. 300 IN A 192.0.2.1"),
             parse_record("www.example.test. 300 IN A 192.0.2.2")]
    head = struct.pack("!HBBIIIH", 1, algorithm, 3, 300, NOW + 86400, NOW - 86400,
                       key.key_tag) + b"\x07example\x04test\x00"
    fields = Rrsig.from_record(make_record(rrset[0].name, 46, 300, head + b"\x00"))
    rrsig = make_record(rrset[0].name, 46, 300, head + sign(signed_data(fields, rrset)))
    return rrset, rrsig, key


def main() -> None:
    for name, make in (("RSASHA256 (2048-bit)", _rsa), ("ECDSAP256SHA256", _p256),
                       ("ED25519", _ed25519)):
        rrset, rrsig, key = _signed(*make())
        assert verify_rrsig(rrset, rrsig, key, ZONE, NOW).verdict.is_secure
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(ROUNDS):
                verify_rrsig(rrset, rrsig, key, ZONE, NOW)
            best = min(best, (time.perf_counter() - start) / ROUNDS)
        print(f"{name:22s} {best * 1e6:8.1f} µs per verification (best of 5 x {ROUNDS})")


if __name__ == "__main__":
    main()
