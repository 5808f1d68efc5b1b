"""The keyed seal: an HMAC-SHA256 over the canonical manifest, with a key that lives outside the store.

``manifest_sha256`` catches accidents (a flipped bit, a hand edit) but anyone who can write the store can
recompute it. The seal needs the key: a file under the user's config folder (``~/.config/dbsnap/seal.key``,
``DBSNAP_SEAL_KEY_FILE`` to move it) or ``DBSNAP_SEAL_KEY``. The manifest records the key id (a hash of the key,
never the key), so ``show``/``list`` can say who sealed a snapshot and a rollback can tell "not sealed by my key"
from "sealed by my key and changed since".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .snapshots import canonical

ALGORITHM = "hmac-sha256"
MIN_KEY_BYTES = 16

VALID = "valid"  # sealed by the configured key, unchanged since
UNSEALED = "unsealed"  # no seal at all
OTHER_KEY = "other-key"  # sealed by a key that is not the configured one
INVALID = "invalid"  # claims the configured key, but the HMAC does not match: changed after sealing
NO_KEY = "no-key"  # no key configured here: the seal (if any) cannot be checked


@dataclass(frozen=True)
class Key:
    secret: bytes
    source: str

    @property
    def id(self) -> str:
        """16 hex digits that name the key without revealing it."""
        return hashlib.sha256(b"dbsnap-seal-key-id\0" + self.secret).hexdigest()[:16]


def default_key_file(env: dict[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "dbsnap" / "seal.key"


def load_key(env: dict[str, str]) -> Key | None:
    """The configured key: DBSNAP_SEAL_KEY, else DBSNAP_SEAL_KEY_FILE, else the default file if it exists.

    A key file must be a regular file readable by its owner only (0600 or stricter), and a key at least
    MIN_KEY_BYTES long; ConfigError otherwise.
    """
    raw = env.get("DBSNAP_SEAL_KEY")
    if raw:
        secret, source = raw.strip().encode(), "DBSNAP_SEAL_KEY"
    else:
        path = Path(env["DBSNAP_SEAL_KEY_FILE"]).expanduser() if env.get("DBSNAP_SEAL_KEY_FILE") else None
        if path is None:
            path = default_key_file(env)
            if not path.exists():
                return None
        secret, source = read_key_file(path, "seal key"), str(path)
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigError(f"seal key from {source} is shorter than {MIN_KEY_BYTES} bytes")
    return Key(secret, source)


def read_key_file(path: Path, what: str) -> bytes:
    """The stripped contents of key file ``path``: a regular file that no one but its owner may read (0600 or
    stricter). ConfigError naming ``what`` otherwise, or when it cannot be read."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {path} is not a regular file")
        if st.st_mode & 0o077:
            raise ConfigError(
                f"{what} {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o})",
                hint=f"chmod 600 {path}",
            )
        return path.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from e


def make_seal(manifest: dict, key: Key) -> dict:
    """The seal to store in the manifest's ``seal`` field (which the seal itself does not cover)."""
    mac = hmac.new(key.secret, canonical(manifest), hashlib.sha256).hexdigest()
    return {"algorithm": ALGORITHM, "key_id": key.id, "hmac": mac}


def sealed_by(manifest: dict) -> str | None:
    """The key id the manifest claims to be sealed by (unchecked), for display."""
    seal = manifest.get("seal")
    return seal.get("key_id") if isinstance(seal, dict) and isinstance(seal.get("key_id"), str) else None


def check_seal(manifest: dict, key: Key | None) -> str:
    """VALID, UNSEALED, OTHER_KEY, INVALID or NO_KEY (see the constants)."""
    seal = manifest.get("seal")
    if key is None:
        return NO_KEY
    if not isinstance(seal, dict) or not seal:
        return UNSEALED
    if seal.get("key_id") != key.id:
        return OTHER_KEY
    want = hmac.new(key.secret, canonical(manifest), hashlib.sha256).hexdigest()
    ok = seal.get("algorithm") == ALGORITHM and hmac.compare_digest(str(seal.get("hmac", "")), want)
    return VALID if ok else INVALID
