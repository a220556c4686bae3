"""The backend suite: the same behaviour tests against a lake in a local folder and one on S3.

A test that takes the `backend` fixture (tests/conftest.py) runs once per backend, as the
`eventsourcing` library runs one recorder test case per database: the test is written once,
against `Backend`, and what differs between the two (where a lake's root is, the storage
options it opens with, how a worker process reaches it) is answered here. How a test looks at
the files of a lake on either backend is in tests/logfiles.py (`options=`).

The S3 backend is a real SeaweedFS server on loopback (tests/s3server.py), started once per
session and only when a test asks for it; every lake gets its own prefix of one bucket.
`EVENTLAKE_TEST_BACKENDS=local` (comma-separated) narrows a run while developing (see
`BACKENDS` in tests/conftest.py).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

import eventlake as el
from tests.logfiles import file_system
from tests.s3server import S3Endpoint

__all__ = ["ACCESS_KEY", "AWS_VARIABLES", "SECRET", "Backend", "open_worker_lake"]

# The S3 server's one identity. The secret is distinctive: no output of any run may hold it.
SECRET = "EL-s3cr3t-9f4e1c7a-DO-NOT-PRINT"
ACCESS_KEY = "eventlake-access"

# What a machine's environment could set for S3: the fixtures clear these, so a test's options
# come only from where the test says.
AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "AWS_ALLOW_HTTP", "AWS_CONDITIONAL_PUT",
                 "EVENTLAKE_STORAGE_OPTIONS")


@dataclass(frozen=True)
class Backend:
    """Where one backend's lakes live, and how to open them.

    `folder` is the test's own temporary folder: local lakes go below it, and so does
    anything local a test of either backend needs (a reference lake, say).
    """

    name: Literal["local", "s3"]
    folder: Path
    endpoint: S3Endpoint | None = None

    @property
    def is_local(self) -> bool:
        return self.endpoint is None

    @property
    def options(self) -> dict[str, str]:
        """The storage options a lake of this backend opens with (none for a folder)."""
        return {} if self.endpoint is None else self.endpoint.options()

    def root(self) -> str:
        """A fresh, empty lake root: a new folder below `folder`, or a new S3 prefix."""
        if self.endpoint is None:
            return str(Path(tempfile.mkdtemp(dir=self.folder, prefix="lake-")) / "lake")
        return self.endpoint.lake_uri()

    def open(self, root: str | None = None, **kwargs: Any) -> el.Lake:
        """`el.Lake.open` of `root` (a fresh one by default) with this backend's options."""
        return el.Lake.open(root or self.root(), storage_options=self.options or None,
                            **kwargs)

    def worker_args(self, lake: el.Lake) -> tuple[str, dict[str, str]]:
        """What a spawned worker needs to open `lake` again: its root and options (a
        worker gets no fixture, and on S3 no environment either)."""
        return lake.root, self.options

    def write_parquet(self, lake: el.Lake, path: str, table: pa.Table) -> None:
        """Write a Parquet file at `path` (a full path or URI under the lake's root) behind
        the lake's back, as a crashed writer could leave one."""
        fs, spelled = file_system(lake.root, options=lake.storage.options)
        pq.write_table(table, spelled(path), filesystem=fs)


def open_worker_lake(root: str, options: dict[str, str]) -> el.Lake:
    """A worker process's lake, from `Backend.worker_args`."""
    return el.Lake.open(root, storage_options=options or None)
