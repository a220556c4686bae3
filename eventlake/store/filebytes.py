"""How many bytes a table's data files hold once decoded, from their Parquet footers.

A refresh or rebuild bounds its memory by the bytes it reads, not by its event count: 100k
events of 8 KB payloads are 800 MB in memory, 100k of 100 bytes are 10 MB. The Delta log
logs each file's size on disk, but compression hides how big its rows are in memory (a
payload of repeated text compresses twenty-fold), so the figure used is each file's
uncompressed column data, which its Parquet footer records per row group (the payload column
is written without a dictionary, so that is its size in an Arrow buffer too). A footer is one
small read at the file's end; data files never change, so an answer is kept per path for
the life of the process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import pyarrow.parquet as pq

from eventlake.store.storage import Snapshot

__all__ = ["decoded_bytes"]

_KNOWN: OrderedDict[tuple[str, str], int] = OrderedDict()
_KNOWN_MAX = 1_000_000
_LOCK = threading.Lock()


def decoded_bytes(snap: Snapshot, paths: Sequence[str], sizes: Sequence[int | None], *,
                  sample: int | None = None) -> list[int]:
    """The uncompressed bytes of each file `paths` (as the Delta log spells them) names.

    A file whose footer cannot be read counts as its logged size (`sizes`): the read that
    follows reports the damage, this estimate need not. With `sample`, at most that many
    footers not read before are read (spread evenly over the list), and each other file is
    taken to decode at the highest ratio to its logged size the sample showed: a window of
    a thousand small files costs a few milliseconds, not a footer each, and the files of one
    lake decode alike (the estimate errs on the large side for the rest).
    """
    table = snap.storage.uri(snap.name)
    found: dict[int, int] = {}
    missing: list[int] = []
    with _LOCK:
        for index, path in enumerate(paths):
            known = _KNOWN.get((table, path))
            if known is None:
                missing.append(index)
            else:
                found[index] = known
    guessed: list[int] = []
    if sample is not None and len(missing) > sample:
        step = len(missing) / sample
        chosen = {missing[int(i * step)] for i in range(sample)}
        guessed = [i for i in missing if i not in chosen]
        missing = sorted(chosen)
    if missing:
        read = _Footers(snap)
        if snap.storage.is_local or len(missing) == 1:
            values = [read(paths[i]) for i in missing]
        else:
            # One round trip each on an object store: overlap them.
            with ThreadPoolExecutor(min(8, len(missing))) as pool:
                values = list(pool.map(read, [paths[i] for i in missing]))
        with _LOCK:
            for index, value in zip(missing, values, strict=True):
                if value is not None:
                    _KNOWN[(table, paths[index])] = value
                    found[index] = value
            while len(_KNOWN) > _KNOWN_MAX:
                _KNOWN.popitem(last=False)
    if guessed:
        ratios = [found[i] / int(sizes[i] or 1) for i in found if sizes[i]]
        ratio = max(ratios, default=1.0)
        for index in guessed:
            found[index] = int(int(sizes[index] or 0) * ratio)
    return [found[i] if i in found else int(sizes[i] or 0) for i in range(len(paths))]


class _Footers:
    def __init__(self, snap: Snapshot) -> None:
        self.storage = snap.storage
        self.name = snap.name
        self._fs = None if snap.storage.is_local else snap.storage.file_system(snap.name)[0]

    def __call__(self, path: str) -> int | None:
        if "://" in path:
            return None  # a file outside the table's folder: its logged size serves
        relative = unquote(path)
        try:
            if self._fs is None:
                meta = pq.read_metadata(self.storage.local_path(self.name, relative))
            else:
                meta = pq.read_metadata(relative, filesystem=self._fs)
        except (OSError, ValueError):
            return None
        return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
