"""Client-side encryption of payloads, through ``cryptography``: AES-256-GCM in a chunked stream.

``cryptography`` because it is the Python binding of OpenSSL that the ecosystem maintains (wheels for every
platform, audited AEADs, scrypt and HKDF), and AES-GCM is hardware-accelerated; age through pyrage would need
the whole payload in memory. The stream is the STREAM construction age and Tink use: the plaintext is cut into
CHUNK-byte pieces, each sealed with AES-GCM under a per-file key and a nonce made of the chunk counter and a
"last chunk" flag, so chunks cannot be reordered, dropped or cut off at a chunk boundary without the tag failing.

- the key (or passphrase) from ``DBSNAP_ENCRYPTION_KEY`` or the 0600 file ``DBSNAP_ENCRYPTION_KEY_FILE`` is
  stretched once with scrypt into a master key; its id (a hash of the master key) is what manifests record;
- each file has its own key: HKDF(master, random 32-byte salt, info = "<snapshot>/<file>"), so a payload
  cannot be swapped for another one's and no nonce is ever reused;
- a file is ``MAGIC | salt | chunk...``.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ...errors import ConfigError, IntegrityError
from ..seal import read_key_file

ALGORITHM = "aes-256-gcm-stream-v1"
MAGIC = b"DBSNAPE1"
SALT = 32
CHUNK = 256 << 10
TAG = 16
MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class CryptKey:
    master: bytes
    source: str

    @property
    def id(self) -> str:
        """16 hex digits naming the key, never revealing it (a hash of the scrypt-stretched key)."""
        return hashlib.sha256(b"dbsnap-encryption-key-id\0" + self.master).hexdigest()[:16]

    def file_key(self, salt: bytes, label: str) -> bytes:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"dbsnap payload\0" + label.encode())
        return hkdf.derive(self.master)


def load_key(env: dict[str, str]) -> CryptKey | None:
    """The configured key: DBSNAP_ENCRYPTION_KEY, else the file DBSNAP_ENCRYPTION_KEY_FILE (a regular file,
    0600 or stricter); None when neither is set. ConfigError for a bad file or a key under MIN_KEY_BYTES."""
    raw = env.get("DBSNAP_ENCRYPTION_KEY")
    if raw:
        secret, source = raw.strip().encode(), "DBSNAP_ENCRYPTION_KEY"
    elif env.get("DBSNAP_ENCRYPTION_KEY_FILE"):
        path = Path(env["DBSNAP_ENCRYPTION_KEY_FILE"]).expanduser()
        secret, source = read_key_file(path, "encryption key"), str(path)
    else:
        return None
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigError(f"encryption key from {source} is shorter than {MIN_KEY_BYTES} bytes")
    # scrypt makes guessing a passphrase cost ~0.1 s and 32 MB per guess; the fixed salt is a domain separator
    # (the id must be the same on every machine that holds the key).
    master = Scrypt(salt=b"dbsnap-encryption-v1", length=32, n=2**15, r=8, p=1).derive(secret)
    return CryptKey(master, source)


def _nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class EncryptingReader(io.RawIOBase):
    """Reads ``src`` and yields its encrypted stream; the plaintext is read one chunk ahead to know the last."""

    def __init__(self, src: io.BufferedIOBase, key: CryptKey, label: str) -> None:
        self.src = src
        salt = os.urandom(SALT)
        self.aead = AESGCM(key.file_key(salt, label))
        self.buf = MAGIC + salt
        self.counter = 0
        self.next = src.read(CHUNK)
        self.done = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self.buf and not self.done:
            cur, self.next = self.next, self.src.read(CHUNK)
            last = not self.next
            self.buf = self.aead.encrypt(_nonce(self.counter, last), cur, None)
            self.counter += 1
            self.done = last

    def readinto(self, b) -> int:  # type: ignore[override]
        self._fill()
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


class DecryptingWriter(io.RawIOBase):
    """Takes an encrypted stream by ``write`` and writes the plaintext to ``dest``; ``finish`` checks the last
    chunk. IntegrityError for a wrong key, a changed, reordered or truncated stream."""

    def __init__(self, dest: io.RawIOBase | io.BufferedIOBase, key: CryptKey, label: str, what: str) -> None:
        self.dest, self.key, self.label, self.what = dest, key, label, what
        self.aead: AESGCM | None = None
        self.buf = bytearray()
        self.counter = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.buf += b
        if self.aead is None:
            if len(self.buf) < len(MAGIC) + SALT:
                return len(b)
            if bytes(self.buf[: len(MAGIC)]) != MAGIC:
                raise IntegrityError(f"{self.what}: not a dbsnap encrypted stream")
            salt = bytes(self.buf[len(MAGIC) : len(MAGIC) + SALT])
            self.aead = AESGCM(self.key.file_key(salt, self.label))
            del self.buf[: len(MAGIC) + SALT]
        # A full chunk is decrypted only once more bytes follow: the last chunk may be a full one too.
        while len(self.buf) > CHUNK + TAG:
            self._chunk(bytes(self.buf[: CHUNK + TAG]), last=False)
            del self.buf[: CHUNK + TAG]
        return len(b)

    def _chunk(self, data: bytes, last: bool) -> None:
        assert self.aead is not None
        try:
            plain = self.aead.decrypt(_nonce(self.counter, last), data, None)
        except InvalidTag:
            raise IntegrityError(
                f"{self.what}: decryption failed (wrong key, or the object was changed or cut short)",
            ) from None
        self.counter += 1
        self.dest.write(plain)

    def finish(self) -> None:
        """The stream is complete: decrypt its last chunk (IntegrityError if it is missing or cut)."""
        if self.aead is None or len(self.buf) < TAG:
            raise IntegrityError(f"{self.what}: truncated encrypted stream")
        self._chunk(bytes(self.buf), last=True)
        self.buf = bytearray()


def encrypted_size(plain: int) -> int:
    """The size of the encrypted stream of ``plain`` bytes (at least one, possibly empty, final chunk)."""
    chunks = max(1, -(-plain // CHUNK))
    return len(MAGIC) + SALT + plain + chunks * TAG
