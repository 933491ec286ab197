"""The signature mathematics of DNSSEC's algorithms, with the `cryptography` package.

RSA (RFC 3110, RFC 5702), ECDSA (RFC 6605) and EdDSA (RFC 8080): a DNSKEY's key octets
become a public key object and an RRSIG's signature is checked over the signed data.
Imported only when a signature is checked, so a resolver that does not validate never
loads `cryptography`.
"""

from __future__ import annotations

import functools

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from resolver.dnssec.signatures import Algorithm

__all__ = ["signature_holds"]

_RSA_HASH: dict[int, type[hashes.HashAlgorithm]] = {
    Algorithm.RSASHA1: hashes.SHA1,
    Algorithm.RSASHA1_NSEC3_SHA1: hashes.SHA1,
    Algorithm.RSASHA256: hashes.SHA256,
    Algorithm.RSASHA512: hashes.SHA512,
}
_EC_CURVE: dict[int, tuple[ec.EllipticCurve, type[hashes.HashAlgorithm], int]] = {
    Algorithm.ECDSAP256SHA256: (ec.SECP256R1(), hashes.SHA256, 32),
    Algorithm.ECDSAP384SHA384: (ec.SECP384R1(), hashes.SHA384, 48),
}


def signature_holds(algorithm: int, public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        verifier = _public_key(algorithm, public_key)
    except ValueError:
        return False  # a key that does not decode proves nothing
    try:
        if algorithm in _RSA_HASH:
            assert isinstance(verifier, rsa.RSAPublicKey)
            verifier.verify(signature, data, padding.PKCS1v15(), _RSA_HASH[algorithm]())
        elif algorithm in _EC_CURVE:
            assert isinstance(verifier, ec.EllipticCurvePublicKey)
            _, digest, size = _EC_CURVE[algorithm]
            if len(signature) != 2 * size:  # RFC 6605 §4: r | s, each of the curve's size
                return False
            der = encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                       int.from_bytes(signature[size:], "big"))
            verifier.verify(der, data, ec.ECDSA(digest()))
        else:
            assert isinstance(verifier, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
            verifier.verify(signature, data)
    except InvalidSignature:
        return False
    return True


_PublicKey = (rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
              | ed448.Ed448PublicKey)


@functools.lru_cache(maxsize=1024)
def _public_key(algorithm: int, octets: bytes) -> _PublicKey:
    """The key object of DNSKEY key octets; ValueError if they do not form a key.
    Cached: a zone's few keys verify many signatures."""
    if algorithm in _RSA_HASH:
        return _rsa_key(octets)
    if algorithm in _EC_CURVE:
        curve, _, size = _EC_CURVE[algorithm]
        if len(octets) != 2 * size:  # RFC 6605 §4: x | y
            raise ValueError("ECDSA key of the wrong length")
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + octets)
    if algorithm == Algorithm.ED25519:
        return ed25519.Ed25519PublicKey.from_public_bytes(octets)
    if algorithm == Algorithm.ED448:
        return ed448.Ed448PublicKey.from_public_bytes(octets)
    raise ValueError(f"algorithm {algorithm} is not supported")


def _rsa_key(octets: bytes) -> rsa.RSAPublicKey:
    """RFC 3110 §2: exponent length (one octet, or zero then two), exponent, modulus."""
    if not octets:
        raise ValueError("empty RSA key")
    if octets[0]:
        length, start = octets[0], 1
    else:
        if len(octets) < 3:
            raise ValueError("truncated RSA exponent length")
        length, start = int.from_bytes(octets[1:3], "big"), 3
    exponent = int.from_bytes(octets[start : start + length], "big")
    modulus_octets = octets[start + length :]
    if start + length > len(octets) or not modulus_octets or exponent < 3:
        raise ValueError("malformed RSA key")
    # RFC 3110 §2 allows up to 4096 bits; larger moduli only cost time.
    if len(modulus_octets) > 512:
        raise ValueError("RSA modulus over 4096 bits")
    return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus_octets, "big")).public_key()
