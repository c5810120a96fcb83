"""Keys and ciphers of the evidence chain.

- Device signing key: ECDSA P-256 / SHA-256 (DER signatures), the curve phone secure
  elements offer. Fingerprint: SHA-256 of the SubjectPublicKeyInfo DER, in hex.
- Server sealing key: X25519. A session root key is sealed to it with an ephemeral
  X25519 key, HKDF-SHA256 and AES-256-GCM; the ephemeral private key is dropped at once.
- Segment keys: a one-way chain (HMAC-SHA256) from the root key. The recorder keeps only
  the chain key of the *next* segment, so it holds nothing that decrypts what it has
  already sent; the server, which can unseal the root key, derives any segment key.
- Server signing and export keys: Ed25519 (raw signatures, checkable with
  ``openssl pkeyutl -verify -rawin``).
- At rest: AES-256-GCM under a per-case key, itself wrapped by the master key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Callable, ClassVar

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .canonical import b64d, b64e

Random = Callable[[int], bytes]

SEAL_INFO = b"balise-evidence seal v1"
CHAIN_START = b"balise-evidence chain v1"
DEVICE_SEAL_INFO = b"balise-device seal v1"


class CryptoError(Exception):
    """A key, seal or ciphertext that does not open or does not parse."""


# --- public keys -----------------------------------------------------------------------


def spki_der(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem(public_key) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(public_key) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER (``openssl pkey -pubin -outform DER | sha256sum``)."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()


def load_public_pem(pem: str | bytes):
    try:
        return serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError) as exc:
        raise CryptoError("not a PEM public key") from exc


def _private_pem(private_key) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def load_private_pem(pem: str | bytes):
    try:
        return serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CryptoError("not a PEM private key") from exc


# --- key pairs ------------------------------------------------------------------------


@dataclass(frozen=True)
class _KeyPair:
    private_key: object
    _type: ClassVar[type] = object
    _what: ClassVar[str] = ""

    @classmethod
    def from_pem(cls, pem: str | bytes):
        key = load_private_pem(pem)
        if not isinstance(key, cls._type) or getattr(getattr(key, "curve", None), "name", "secp256r1") != "secp256r1":
            raise CryptoError(f"the key must be an {cls._what} private key")
        return cls(key)

    def to_pem(self) -> str:
        return _private_pem(self.private_key)

    @property
    def public_key(self):
        return self.private_key.public_key()

    @property
    def public_pem(self) -> str:
        return public_pem(self.public_key)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


@dataclass(frozen=True)
class DeviceKey(_KeyPair):
    """The per-device signing key (ECDSA P-256), created at enrolment."""

    _type: ClassVar[type] = ec.EllipticCurvePrivateKey
    _what: ClassVar[str] = "ECDSA P-256"

    @classmethod
    def generate(cls) -> "DeviceKey":
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))

    def open_sealed(self, blob: bytes, aad: bytes) -> bytes:
        """What ``seal_to_device`` sealed to this key."""
        try:
            epk = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), blob[:65])
        except ValueError as exc:
            raise CryptoError("not sealed to a device key") from exc
        key = _device_seal_kdf(self.private_key.exchange(ec.ECDH(), epk), blob[:65], self.public_key)
        return open_blob(key, aad, blob[65:])


def _p256_point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _device_seal_kdf(shared: bytes, epk: bytes, device_public: ec.EllipticCurvePublicKey) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + _p256_point(device_public),
                info=DEVICE_SEAL_INFO).derive(shared)


def seal_to_device(device_public: ec.EllipticCurvePublicKey, data: bytes, aad: bytes,
                   random: Random = os.urandom) -> bytes:
    """ECIES to a device's P-256 key (ephemeral ECDH, HKDF-SHA256, AES-256-GCM): only the
    device opens it. The device key also signs (ECDSA): the two uses share the key, each
    with its own label (KDF info, AAD)."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    epk = _p256_point(ephemeral.public_key())
    key = _device_seal_kdf(ephemeral.exchange(ec.ECDH(), device_public), epk, device_public)
    return epk + seal_blob(key, aad, data, random)


def load_device_public_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    key = load_public_pem(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CryptoError("not an ECDSA P-256 public key")
    return key


def verify_device_signature(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Signer(_KeyPair):
    """An Ed25519 key that signs receipts, log entries, notices, custody records, exports."""

    _type: ClassVar[type] = ed25519.Ed25519PrivateKey
    _what: ClassVar[str] = "Ed25519"

    @classmethod
    def generate(cls) -> "Signer":
        return cls(ed25519.Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def verify_ed25519(public_key: ed25519.Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public_key.verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SealKey(_KeyPair):
    """The server's X25519 key pair: sessions seal their root key to its public half."""

    _type: ClassVar[type] = x25519.X25519PrivateKey
    _what: ClassVar[str] = "X25519"

    @classmethod
    def generate(cls) -> "SealKey":
        return cls(x25519.X25519PrivateKey.generate())

    def unseal(self, session: str, sealed: dict) -> bytes:
        try:
            epk = x25519.X25519PublicKey.from_public_bytes(b64d(sealed["epk"]))
            nonce, ct = b64d(sealed["nonce"]), b64d(sealed["ct"])
            wrap = _seal_kdf(self.private_key.exchange(epk), b64d(sealed["epk"]), _raw_x25519(self.public_key))
            return AESGCM(wrap).decrypt(nonce, ct, session.encode())
        except (KeyError, TypeError, ValueError, InvalidTag) as exc:
            raise CryptoError("the session key does not unseal") from exc


def load_seal_public_key(pem: str | bytes) -> x25519.X25519PublicKey:
    key = load_public_pem(pem)
    if not isinstance(key, x25519.X25519PublicKey):
        raise CryptoError("not an X25519 public key")
    return key


def _raw_x25519(public_key: x25519.X25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _seal_kdf(shared: bytes, epk: bytes, server_pub: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + server_pub, info=SEAL_INFO).derive(shared)


def seal_session_key(
    server_public: x25519.X25519PublicKey, session: str, root_key: bytes, random: Random = os.urandom
) -> dict:
    """Seal ``root_key`` so that only the holder of the server's private key opens it."""
    ephemeral = x25519.X25519PrivateKey.from_private_bytes(random(32))
    epk = _raw_x25519(ephemeral.public_key())
    wrap = _seal_kdf(ephemeral.exchange(server_public), epk, _raw_x25519(server_public))
    nonce = random(12)
    ct = AESGCM(wrap).encrypt(nonce, root_key, session.encode())
    return {"alg": "X25519-HKDF-SHA256-A256GCM", "epk": b64e(epk), "nonce": b64e(nonce), "ct": b64e(ct)}


# --- segment keys: a one-way chain ----------------------------------------------------


def _hmac(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, label, hashlib.sha256).digest()


def first_chain_key(root_key: bytes) -> bytes:
    return _hmac(root_key, CHAIN_START)


def next_chain_key(chain_key: bytes) -> bytes:
    return _hmac(chain_key, b"next")


def segment_key(chain_key: bytes) -> bytes:
    return _hmac(chain_key, b"segment")


def segment_key_at(root_key: bytes, seq: int) -> bytes:
    """The key of segment ``seq`` (1 for the first segment), derived from the root key."""
    chain = first_chain_key(root_key)
    for _ in range(seq - 1):
        chain = next_chain_key(chain)
    return segment_key(chain)


def segment_aad(session: str, seq: int) -> bytes:
    return f"balise-evidence segment v1|{session}|{seq}".encode()


def encrypt_segment(key: bytes, nonce: bytes, session: str, seq: int, audio: bytes) -> bytes:
    return AESGCM(key).encrypt(nonce, audio, segment_aad(session, seq))


def decrypt_segment(key: bytes, nonce: bytes, session: str, seq: int, ciphertext: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, segment_aad(session, seq))
    except (InvalidTag, ValueError) as exc:
        raise CryptoError("the segment does not decrypt") from exc


# --- at rest: per-case keys wrapped by the master key ---------------------------------


def seal_blob(key: bytes, aad: bytes, data: bytes, random: Random = os.urandom) -> bytes:
    """AES-256-GCM, nonce first. Used for the case key under the master key, and for
    stored ciphertexts under the case key."""
    nonce = random(12)
    return nonce + AESGCM(key).encrypt(nonce, data, aad)


def open_blob(key: bytes, aad: bytes, blob: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], aad)
    except (InvalidTag, ValueError) as exc:
        raise CryptoError("the stored blob does not open (wrong key or altered)") from exc
