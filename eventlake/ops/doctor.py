"""`doctor`: check that a lake's files are what its Delta logs say, and clean up after crashes.

What a crash or a damaged disk can leave behind, and what `doctor` reports for each table
(`events` and every view table):

- **orphan**: a data file under the table folder that no commit of the Delta log ever
  referenced (a writer died after writing its Parquet files and before its commit, or a
  commit attempt lost the race to another writer). Orphans are invisible to every reader and
  harmless but for the space they take, so they are a warning, not damage (`DoctorReport.ok`
  stays true); `fix=True` deletes those older than `min_age_seconds` (younger ones may belong
  to a commit in flight). Files that a commit removed (tombstones, kept for time travel) are
  not orphans; `vacuum` deletes them after its retention.
- **orphan** in `_staging`: a chunk a parallel ingest's worker staged for its coordinator
  (`eventlake.ingest.parallel`), or a strict ingest while it checked the rest of its file,
  that was never landed and deleted: the ingest was killed. Same rule as any orphan.
- **temp**: a temporary commit file in `_delta_log` (`<version>.json#<n>`) left by a crash in
  the middle of a commit; invisible to Delta; a warning like an orphan, and `fix=True`
  deletes it (same age rule).
- **missing** / **size** / **unreadable** / **rows**: a file the current version references
  is gone, has another size than its add action says, has no readable Parquet footer, or holds
  another number of rows than its statistics say. Nothing is deleted; see the README's
  "Recovery" section (restore the table to an earlier version, rebuild a view).
- **log**: a commit file of `_delta_log` that is not valid JSON, or a missing commit file in
  the middle of the log.
- **seq** (event log only): the rows do not hold each `seq` from 1 to the log's last seq
  exactly once, except the seq ranges an erase recorded (`eventlake.store.erasures`), which
  may be missing and are listed (`DoctorReport.erased`).
- **erase**: an erase of a partition started and did not finish (a crash mid-way); running
  the erase again, or `fix=True`, finishes it.

`diagnose` is the read seam's helper: given a Polars/Delta/OS error raised while reading a
lake, it finds the damaged file and returns a `CorruptLakeError` naming it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from eventlake.errors import CorruptLakeError, EventlakeError
from eventlake.store.tablefiles import (
    FIXABLE,
    LOG_DIR,
    Problem,
    check_log,
    join_path,
    list_files,
    relative_path,
)

if TYPE_CHECKING:
    from eventlake.store.parts import LakeParts
    from eventlake.store.storage import Snapshot, Storage

__all__ = [
    "DEFAULT_MIN_AGE_SECONDS",
    "DoctorReport",
    "Problem",
    "check_log",
    "check_table_files",
    "diagnose",
    "doctor",
    "find_orphans",
    "find_staged",
]

# A file younger than this may belong to a commit still in flight: never deleted by default.
DEFAULT_MIN_AGE_SECONDS = 3600.0

@dataclass(frozen=True)
class DoctorReport:
    """What `doctor` found (and, with `fix=True`, deleted)."""

    tables: tuple[str, ...]
    files_checked: int
    problems: tuple[Problem, ...]
    removed: tuple[str, ...] = ()
    skipped_young: tuple[str, ...] = field(default=())
    # A suggestion about the event log's layout (`LakeInfo.advice`): a note, never damage.
    advice: str | None = None
    # The seq ranges erases removed (accepted gaps), and the erases `fix` finished.
    erased: tuple[tuple[int, int], ...] = ()
    erasures_finished: tuple[str, ...] = ()

    @property
    def remaining(self) -> tuple[Problem, ...]:
        """Problems still present after the fix (all of them without `fix`)."""
        gone = set(self.removed)
        return tuple(p for p in self.problems if p.path not in gone)

    @property
    def ok(self) -> bool:
        """No damage. Orphaned and temporary files are harmless leftovers: a warning only."""
        return not self.damage

    @property
    def clean(self) -> bool:
        """Nothing at all is left to report: no damage and no leftover file."""
        return not self.remaining

    @property
    def orphans(self) -> tuple[Problem, ...]:
        """Orphaned data files and temporary commit files found (removed or not)."""
        return tuple(p for p in self.problems if p.kind in FIXABLE)

    @property
    def leftovers(self) -> tuple[Problem, ...]:
        """The orphaned and temporary files still on storage (after the fix, if any)."""
        return tuple(p for p in self.remaining if p.kind in FIXABLE)

    @property
    def leftover_bytes(self) -> int:
        """The space the leftovers take."""
        return sum(p.size or 0 for p in self.leftovers)

    @property
    def damage(self) -> tuple[Problem, ...]:
        """Problems `fix` cannot repair: committed data that is missing or unreadable."""
        return tuple(p for p in self.problems if p.kind not in FIXABLE)

    def leftovers_by_table(self) -> dict[str, tuple[int, int]]:
        """Table -> (number of leftover files, bytes they take), tables in report order."""
        counts: dict[str, tuple[int, int]] = {}
        for problem in self.leftovers:
            files, size = counts.get(problem.table, (0, 0))
            counts[problem.table] = (files + 1, size + (problem.size or 0))
        return counts

    def to_json(self) -> dict[str, Any]:
        gone = set(self.removed)
        return {"ok": self.ok, "clean": self.clean, "tables": list(self.tables),
                "files_checked": self.files_checked, "damaged": len(self.damage),
                "orphans": {"count": len(self.leftovers), "bytes": self.leftover_bytes,
                            "removed": sum(1 for p in self.orphans if p.path in gone),
                            "by_table": {t: {"count": n, "bytes": b}
                                         for t, (n, b) in self.leftovers_by_table().items()}},
                "problems": [p.to_json() for p in self.problems],
                "removed": list(self.removed), "skipped_young": list(self.skipped_young),
                "advice": self.advice, "erased": [list(r) for r in self.erased],
                "erasures_finished": list(self.erasures_finished)}


# -- data files ------------------------------------------------------------------------------


def check_table_files(snap: Snapshot, *, deep: bool = True,
                      only: Iterable[str] | None = None) -> tuple[int, list[Problem]]:
    """Check the files `snap` references: present, of the logged size and (with `deep`)
    with a readable Parquet footer holding the logged number of rows."""
    import pyarrow.parquet as pq

    fs, base = snap.storage.file_system(snap.name)
    actions = snap.add_actions()
    wanted = None if only is None else set(only)
    problems: list[Problem] = []
    checked = 0
    sizes = actions.column("size_bytes").to_pylist()
    rows = (actions.column("num_records").to_pylist() if "num_records" in actions.column_names
            else [None] * len(sizes))
    for logged, size, count in zip(actions.column("path").to_pylist(), sizes, rows,
                                   strict=True):
        relative = logged if "://" in logged else unquote(logged)
        shown = snap.storage.shown(snap.name, relative)
        if wanted is not None and shown not in wanted:
            continue
        checked += 1
        path = join_path(base, relative)
        info = fs.get_file_info(path)
        import pyarrow.fs as pafs

        if info.type != pafs.FileType.File:
            problems.append(Problem(snap.name, "missing", shown,
                                    f"referenced by version {snap.version} but not on storage"))
            continue
        if size is not None and info.size != int(size):
            problems.append(Problem(snap.name, "size", shown,
                                    f"{info.size} bytes where the log says {int(size)}",
                                    info.size))
            continue
        if not deep:
            continue
        try:
            with fs.open_input_file(path) as handle:
                metadata = pq.ParquetFile(handle).metadata
        except Exception as exc:
            problems.append(Problem(snap.name, "unreadable", shown,
                                    f"not a readable Parquet file: {exc}", info.size))
            continue
        if count is not None and metadata.num_rows != int(count):
            problems.append(Problem(snap.name, "rows", shown,
                                    f"{metadata.num_rows} rows where the log says {int(count)}",
                                    info.size))
    return checked, problems


def find_orphans(snap: Snapshot, referenced: set[str]) -> list[Problem]:
    """Data files under the table folder that no commit ever referenced."""
    fs, base = snap.storage.file_system(snap.name)
    active = {unquote(p) for p in snap.add_actions().column("path").to_pylist()}
    known = referenced | active
    now = time.time()
    found: list[Problem] = []
    for info in list_files(fs, base):
        relative = relative_path(base, info.path)
        parts = relative.split("/")
        # Delta ignores names starting with '_' or '.' (its log, hidden and temp files).
        if any(part.startswith(("_", ".")) for part in parts):
            continue
        if relative in known:
            continue
        age = now - info.mtime.timestamp() if info.mtime else 0.0
        found.append(Problem(snap.name, "orphan", snap.storage.shown(snap.name, relative),
                             f"no commit references it ({age:.0f} s old)", info.size))
    return found


def find_staged(storage: Storage) -> list[Problem]:
    """Files under `<root>/_staging` (`eventlake.store.staging`): staged by a parallel ingest
    that did not finish (a killed coordinator). No table references them: orphans."""
    from eventlake.store.staging import STAGING, staged_files

    now = time.time()
    return [Problem(STAGING, "orphan", item.path,
                    f"staged by an ingest that did not finish "
                    f"({now - (item.mtime or now):.0f} s old)", item.size)
            for item in staged_files(storage)]


def _check_seq(lake: LakeParts, snap: Snapshot,
               erased: Sequence[tuple[int, int]] = ()) -> list[Problem]:
    """Every seq from 1 to the log's last seq exactly once (reads the `seq` column), except
    the `erased` ranges, which may be missing."""
    import numpy as np
    import pyarrow.parquet as pq

    from eventlake.store.log import SEQ_APP_ID

    last = snap.transaction_version(SEQ_APP_ID) or 0
    fs, base = snap.storage.file_system(snap.name)
    seen = np.zeros(last + 1, dtype=np.uint8)
    problems: list[Problem] = []
    shown_root = snap.storage.shown(snap.name, "")
    for logged in snap.add_actions().column("path").to_pylist():
        relative = unquote(logged)
        try:
            with fs.open_input_file(join_path(base, relative)) as handle:
                seqs = pq.read_table(handle, columns=["seq"]).column("seq").to_numpy()
        except Exception:
            continue  # reported by the file check
        outside = seqs[(seqs < 1) | (seqs > last)]
        if len(outside):
            problems.append(Problem(snap.name, "seq", snap.storage.shown(snap.name,
                                                                 relative),
                                    f"holds seq {int(outside[0])}, outside 1..{last}"))
            seqs = seqs[(seqs >= 1) & (seqs <= last)]
        np.add.at(seen, seqs, 1)
    twice = np.flatnonzero(seen[1:] > 1) + 1
    if len(twice):
        problems.append(Problem(snap.name, "seq", shown_root,
                                f"{len(twice)} seq values appear more than once "
                                f"(first: {int(twice[0])})"))
    for first, end in erased:
        if first <= last:
            seen[max(first, 1):min(end, last) + 1] |= 2  # missing by design: not a gap
    gaps = np.flatnonzero(seen[1:] == 0) + 1
    if len(gaps):
        except_erased = " outside the erased ranges" if len(erased) else ""
        problems.append(Problem(snap.name, "seq", shown_root,
                                f"{len(gaps)} seq values of 1..{last} are missing"
                                f"{except_erased} (first: {int(gaps[0])})"))
    return problems


# -- the whole lake --------------------------------------------------------------------------


def _table_names(lake: LakeParts, views: Sequence[str] | None) -> list[str]:
    from eventlake.store.erasures import ERASURES
    from eventlake.store.log import EVENTS
    from eventlake.store.viewstore import ViewStore

    names = [EVENTS]
    if lake.storage.exists(ERASURES):
        names.append(ERASURES)
    for view_name in views or list(lake.views):
        store = ViewStore(lake.storage, lake.view(view_name))
        if store.exists():
            names.append(store.name)
    return names


def doctor(lake: LakeParts, *, fix: bool = False, deep: bool = True,
           min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS,
           views: Sequence[str] | None = None) -> DoctorReport:
    """Check the event log and the view tables; with `fix`, delete orphans and temp files.

    `deep` reads every referenced file's Parquet footer and the event log's `seq` column;
    without it only existence and sizes are checked. `fix` never touches a file any commit
    references, and skips files younger than `min_age_seconds` (a writer may be about to
    commit them).
    """
    from eventlake.store.log import EVENTS
    from eventlake.store.storage import Snapshot

    problems: list[Problem] = []
    checked = 0
    advice = None
    finished = _finish_erasures(lake) if fix else ()
    erased, problems = _erasures(lake)
    names = _table_names(lake, views)
    for name in names:
        log_problems, referenced = check_log(lake.storage, name)
        problems += log_problems
        try:
            snap = Snapshot.load(lake.storage, name)
        except EventlakeError as exc:
            if not any(p.kind == "log" for p in log_problems):
                problems.append(Problem(name, "log", lake.storage.uri(name, LOG_DIR),
                                        f"the table cannot be opened: {exc}"))
            continue
        count, file_problems = check_table_files(snap, deep=deep)
        checked += count
        problems += file_problems
        if deep and name == EVENTS:
            problems += _check_seq(lake, snap, erased)
        if name == EVENTS:
            advice = _layout_advice(lake, snap)
        problems += find_orphans(snap, referenced)
    problems += find_staged(lake.storage)
    removed: list[str] = []
    young: list[str] = []
    if fix:
        now = time.time()
        for problem in problems:
            if not problem.fixable:
                continue
            if _age(lake.storage, problem.path, now) < min_age_seconds:
                young.append(problem.path)
                continue
            if _delete(lake.storage, problem.path):
                removed.append(problem.path)
    return DoctorReport(tuple(names), checked, tuple(problems), tuple(removed), tuple(young),
                        advice, erased, finished)


def _finish_erasures(lake: LakeParts) -> tuple[str, ...]:
    """`fix`: run every unfinished erase again; the partitions it finished."""
    from eventlake.ops.erase import finish_unfinished

    return tuple(result.partition for result in finish_unfinished(lake))


def _erasures(lake: LakeParts) -> tuple[tuple[tuple[int, int], ...], list[Problem]]:
    """The erased seq ranges, and a problem per erase that did not finish."""
    from eventlake.store.erasures import ERASURES, erased_ranges, read_records, unfinished

    try:
        records = read_records(lake.storage)
    except EventlakeError:
        return (), []  # a damaged record table is reported by its file checks
    shown = lake.storage.shown(ERASURES)
    problems = [Problem(ERASURES, "erase", shown,
                        f"the erase of partition {r.partition!r} (id {r.erase_id}, started "
                        f"{r.recorded_at:%Y-%m-%d %H:%M:%S} UTC) did not finish: run "
                        f"`eventlake erase {r.partition!r} --reason ... --yes` again, or "
                        "`eventlake doctor --fix`")
                for r in unfinished(records)]
    return erased_ranges(records), problems


def _layout_advice(lake: LakeParts, snap: Snapshot) -> str | None:
    """`LakeInfo.advice` for a `partition_id` log (whose partitions its Delta log lists, so
    this reads no data); a bucketed log has none to give."""
    # Here, not at the top: the CLI reads this module's defaults for `doctor --help`, and the
    # layouts load pyarrow.
    from eventlake.model.layout import relayout_advice

    try:
        layout = lake.log.layout(snap)
        if layout.kind != "partition_id":
            return None
        return relayout_advice(layout.kind, len(lake.log.partitions(snap)))
    except EventlakeError:  # the table's damage is reported by the checks above
        return None


def _age(storage: Storage, path: str, now: float) -> float:
    import pyarrow.fs as pafs

    fs, relative = storage.file_system_of(path)
    info = fs.get_file_info(relative)
    if info.type != pafs.FileType.File or info.mtime is None:
        return 0.0
    return now - info.mtime.timestamp()


def _delete(storage: Storage, path: str) -> bool:
    fs, relative = storage.file_system_of(path)
    try:
        fs.delete_file(relative)
    except FileNotFoundError:
        return False
    return True


# -- the read seam ---------------------------------------------------------------------------


def diagnose(lake: LakeParts, exc: BaseException, *, tables: Sequence[str] = ()
             ) -> EventlakeError | None:
    """A `CorruptLakeError` naming the damaged file behind a failed read, or None.

    Checks the current version of the event log and of `tables` (cheap checks first: sizes,
    then footers). None when no damage is found: the error had another cause. An error the
    storage itself caused (a full disk, an object store that does not answer) is that
    `StorageError` instead: the files are not to blame.
    """
    from eventlake.store.log import EVENTS
    from eventlake.store.storage import Snapshot
    from eventlake.store.storage_failures import storage_failure

    failure = storage_failure(lake.storage, exc, path=lake.storage.root, action="using")
    if failure is not None:
        return failure
    found: list[Problem] = []
    for name in dict.fromkeys([EVENTS, *tables]):
        try:
            if name != EVENTS and not lake.storage.exists(name):
                continue  # not created yet (or its creation failed): nothing to damage
            snap = Snapshot.load(lake.storage, name)
        except CorruptLakeError as damaged:
            return damaged
        except Exception:
            continue
        try:
            _, problems = check_table_files(snap, deep=False)
            if not problems:
                _, problems = check_table_files(snap, deep=True)
        except Exception:
            continue
        found += problems
        if found:
            break
    if not found:
        return None
    first = found[0]
    more = f" (and {len(found) - 1} more damaged files)" if len(found) > 1 else ""
    return CorruptLakeError(
        f"damaged lake: {first.path}: {first.detail}{more}; reading failed with "
        f"{type(exc).__name__}: {_first_line(exc)}. Run `eventlake doctor` and see the "
        "README's Recovery section", path=first.path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
