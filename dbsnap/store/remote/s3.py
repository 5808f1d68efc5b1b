"""The object store, through boto3: streaming multipart uploads, ranged downloads, conditional puts.

boto3 because it is the reference S3 client: its transfer manager does multipart uploads and parallel ranged
downloads with bounded buffers, it reads credentials through the standard AWS chain (environment,
``~/.aws/credentials``, profiles, instance roles) and the ``AWS_ENDPOINT_URL*`` variables, and it speaks every
S3-compatible server. Every botocore error becomes a one-line :class:`ExternalError` here (credentials never in
the message), so nothing above this module sees boto3.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from ...errors import ExternalError

PART = 8 << 20  # multipart part size: memory is about PART x CONCURRENCY each way, whatever the payload's size
CONCURRENCY = 8


class AlreadyExists(Exception):
    """A conditional put found the key already there (another push won)."""


def _transfer() -> TransferConfig:
    config = TransferConfig(
        multipart_threshold=PART,
        multipart_chunksize=PART,
        max_concurrency=CONCURRENCY,
        max_io_queue=CONCURRENCY * 4,
        io_chunksize=1 << 20,
    )
    # Payloads are streams (hashed, maybe encrypted, on the way): bound what is buffered in memory. boto3's
    # TransferConfig does not take these in its constructor; the transfer manager reads them as attributes.
    config.max_in_memory_upload_chunks = CONCURRENCY
    config.max_in_memory_download_chunks = 64
    return config


def _direct() -> TransferConfig:
    """For transfers from and to a file at offsets: boto3's defaults (what a raw ``upload_file`` uses), parts of
    PART bytes; memory is bounded by the I/O queue (16 chunks of 256 KB waiting to be written: at boto3's 100
    a pull's peak RSS was 30 MB higher, for no speed), not by the parts."""
    return TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_io_queue=16)


class Bucket:
    """One bucket of one endpoint; keys are full object keys."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        env: dict[str, str] | None = None,
        quick: bool = False,
    ) -> None:
        """``quick``: one attempt, 3 s to connect (for doctor, which must answer soon when nothing listens)."""
        env = env or {}
        self.bucket = bucket
        self.where = f"s3://{bucket}" + (f" at {endpoint}" if endpoint else "")
        creds = {}
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            # The environment dbsnap works with includes the project's .env, which boto3 does not read itself.
            creds = {
                "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                "aws_session_token": env.get("AWS_SESSION_TOKEN") or None,
            }
        try:
            session = boto3.session.Session(profile_name=profile, region_name=region or env.get("AWS_REGION"), **creds)
            self.client = session.client(
                "s3",
                endpoint_url=endpoint,
                config=botocore.config.Config(
                    retries={"max_attempts": 1 if quick else 5, "mode": "standard"},
                    max_pool_connections=CONCURRENCY * 2,
                    connect_timeout=3 if quick else 10,
                    read_timeout=10 if quick else 120,
                ),
            )
        except botocore.exceptions.BotoCoreError as e:
            raise ExternalError(f"cannot use the remote {self.where}: {e}") from e

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except botocore.exceptions.ClientError as e:
            err = e.response.get("Error", {})
            code = err.get("Code", "?")
            hint = None
            if code == "NoSuchBucket" or (code == "404" and what == "reading the bucket"):  # HEAD has no body
                hint = f"create the bucket {self.bucket} first"
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                hint = "check the AWS credentials (environment, ~/.aws/credentials or the profile)"
            message = f"remote {self.where}: {what} failed: {code} {err.get('Message', '')}".rstrip()
            raise ExternalError(message, hint) from e
        except botocore.exceptions.NoCredentialsError as e:
            raise ExternalError(
                f"remote {self.where}: no AWS credentials found",
                hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, or the remote's profile",
            ) from e
        except botocore.exceptions.EndpointConnectionError as e:
            raise ExternalError(
                f"remote {self.where}: {what} failed: {e}",
                hint="check the endpoint (the remote's own, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL) and that it is up",
            ) from e
        except botocore.exceptions.BotoCoreError as e:
            raise ExternalError(f"remote {self.where}: {what} failed: {e}") from e

    def probe(self) -> None:
        """Whether the bucket answers to these credentials (HEAD bucket); ExternalError with the fix if not."""
        with self._errors("reading the bucket"):
            self.client.head_bucket(Bucket=self.bucket)

    # -- small objects ------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        """Write a small object; with ``if_absent`` only when the key does not exist (AlreadyExists if it does)."""
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            with self._errors(f"writing {key}"):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except ExternalError as e:
            cause = e.__cause__
            if if_absent and isinstance(cause, botocore.exceptions.ClientError):
                status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status in (409, 412) or cause.response.get("Error", {}).get("Code") == "PreconditionFailed":
                    raise AlreadyExists(key) from None
            raise

    def get_bytes(self, key: str, limit: int = 16 << 20) -> bytes | None:
        """A small object's bytes (None when it does not exist); ExternalError past ``limit`` bytes."""
        try:
            with self._errors(f"reading {key}"):
                r = self.client.get_object(Bucket=self.bucket, Key=key)
                if r.get("ContentLength", 0) > limit:
                    raise ExternalError(f"remote {self.where}: {key} is larger than {limit} bytes; refusing it")
                return r["Body"].read(limit + 1)[:limit]
        except ExternalError as e:
            cause = e.__cause__
            if isinstance(cause, botocore.exceptions.ClientError) and cause.response.get("Error", {}).get("Code") in (
                "NoSuchKey",
                "404",
            ):
                return None
            raise

    # -- streams --------------------------------------------------------------------------------------------

    def upload(self, key: str, reader: BinaryIO, progress: Callable[[int], None] | None = None) -> None:
        """Stream ``reader`` to ``key`` (multipart above PART bytes, parts uploaded in parallel)."""
        with self._errors(f"uploading {key}"):
            self.client.upload_fileobj(reader, self.bucket, key, Config=_transfer(), Callback=progress)

    def upload_path(self, key: str, path: str, progress: Callable[[int], None] | None = None) -> None:
        """Upload the file at ``path`` to ``key``: boto3's own file upload (parts read by the threads that send
        them, nothing buffered), as fast as a raw ``upload_file``."""
        with self._errors(f"uploading {key}"):
            self.client.upload_file(path, self.bucket, key, Config=_direct(), Callback=progress)

    def download_at(self, key: str, writer: BinaryIO, progress: Callable[[int], None] | None = None) -> None:
        """Download ``key`` into the seekable ``writer`` (parallel ranged GETs, each written at its offset)."""
        with self._errors(f"downloading {key}"):
            self.client.download_fileobj(self.bucket, key, writer, Config=_direct(), Callback=progress)

    def download(self, key: str, writer: BinaryIO, progress: Callable[[int], None] | None = None) -> None:
        """Stream ``key`` into ``writer`` in order (parallel ranged GETs, reassembled; ``writer`` need not seek)."""
        with self._errors(f"downloading {key}"):
            self.client.download_fileobj(self.bucket, key, writer, Config=_transfer(), Callback=progress)

    # -- listing and removal -------------------------------------------------------------------------------

    def list(self, prefix: str, delimiter: str | None = None) -> tuple[list[dict], list[str]]:
        """(objects ``{"key", "size", "modified"}``, common prefixes) under ``prefix``, all pages."""
        objects: list[dict] = []
        prefixes: list[str] = []
        kwargs = {"Bucket": self.bucket, "Prefix": prefix} | ({"Delimiter": delimiter} if delimiter else {})
        with self._errors(f"listing {prefix or '/'}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                for o in page.get("Contents", []):
                    objects.append({"key": o["Key"], "size": o["Size"], "modified": o["LastModified"]})
                prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return objects, prefixes

    def delete(self, keys: list[str]) -> None:
        """Remove objects (missing ones are fine), 1000 per request."""
        with self._errors("deleting objects"):
            for i in range(0, len(keys), 1000):
                batch = [{"Key": k} for k in keys[i : i + 1000]]
                if batch:
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def abort_uploads(self, prefix: str) -> int:
        """Abort unfinished multipart uploads under ``prefix`` (a killed push leaves their parts behind)."""
        n = 0
        with self._errors(f"listing unfinished uploads under {prefix}"):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
                for u in page.get("Uploads", []):
                    with contextlib.suppress(botocore.exceptions.ClientError):
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"])
                        n += 1
        return n
