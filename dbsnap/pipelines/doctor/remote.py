"""Doctor's checks of the default remote (only when one is configured): it answers, the credentials and the
bucket work, a probe object can be written and removed, and the encryption key is readable."""

from __future__ import annotations

import secrets

from ...context import Context
from ...errors import DbsnapError, UsageError
from ...settings import resolve_remote
from .check import FAIL, OK, Check


def check_remote(ctx: Context) -> list[Check]:
    """No line when no remote is configured (``--remote`` URLs are checked when used); otherwise one line for
    the remote and one for writing to it, and one for the encryption key when a key or ``encrypt`` is set."""
    try:
        cfg = resolve_remote(None, ctx.env, ctx.root)
    except UsageError as e:
        if e.message == "no remote configured":
            return _key_checks(ctx, None)
        raise
    from ...store.remote.s3 import Bucket

    bucket = Bucket(cfg.bucket, endpoint=cfg.endpoint, profile=cfg.profile, region=cfg.region, env=ctx.env, quick=True)
    where = cfg.url + (f" at {cfg.endpoint}" if cfg.endpoint else "")
    checks = []
    try:
        bucket.probe()
    except DbsnapError as e:
        checks.append(Check("remote", FAIL, e.message, e.hint))
        return checks + _key_checks(ctx, cfg)
    checks.append(
        Check("remote", OK, f"{cfg.name}: {where} answers; bucket {cfg.bucket} readable with these credentials")
    )
    probe = (f"{cfg.prefix}/" if cfg.prefix else "") + f".dbsnap-doctor-{secrets.token_hex(6)}"
    try:
        bucket.put_bytes(probe, b"dbsnap doctor probe\n")
        bucket.delete([probe])
        checks.append(Check("remote write", OK, f"a probe object written and removed under {cfg.url}"))
    except DbsnapError as e:
        fix = e.hint or "grant s3:PutObject and s3:DeleteObject on the bucket's prefix to these credentials"
        checks.append(Check("remote write", FAIL, e.message, fix))
    return checks + _key_checks(ctx, cfg)


def _key_checks(ctx: Context, cfg) -> list[Check]:
    from ...store.remote import crypt

    set_by = [v for v in ("DBSNAP_ENCRYPTION_KEY", "DBSNAP_ENCRYPTION_KEY_FILE") if ctx.env.get(v)]
    needed = cfg is not None and cfg.encrypt
    if not set_by and not needed:
        return []
    try:
        key = crypt.load_key(ctx.env)
    except DbsnapError as e:
        return [Check("encryption key", FAIL, e.message, e.hint or "fix DBSNAP_ENCRYPTION_KEY_FILE (a 0600 file)")]
    if key is None:
        return [
            Check(
                "encryption key",
                FAIL,
                f"remote {cfg.name} requires encryption and no encryption key is set: push refuses",
                "set DBSNAP_ENCRYPTION_KEY_FILE to a 0600 file holding the key (or DBSNAP_ENCRYPTION_KEY)",
            )
        ]
    return [Check("encryption key", OK, f"key {key.id} from {key.source}")]
