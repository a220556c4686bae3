"""`eventlake.files`, a name README and DESIGN use: re-exports `eventlake.ingest.files`.

The code lives in its layer, `eventlake.ingest` (the layers: tests/test_architecture.py).
"""

from eventlake.ingest.files import (
    FORMATS,
    FileRead,
    RecordProblem,
    SplitFile,
    check_file,
    file_batch_identity,
    file_format,
    inbox_files,
    read_file,
    split_valid,
)

__all__ = [
    "FORMATS",
    "FileRead",
    "RecordProblem",
    "SplitFile",
    "check_file",
    "file_batch_identity",
    "file_format",
    "inbox_files",
    "read_file",
    "split_valid",
]
