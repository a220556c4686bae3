"""Restore the event log to an earlier Delta version, with its `seq` counter, batch keys and views.

A plain Delta restore brings back the data files of a version but not its app transactions,
and the event log keeps its counters in app transactions (see `eventlake.store.log`). After one,
`seq` would go on from the newest value (a gap), the batches it took out could never be
appended again under their keys (they would be reported as duplicates), and every view would
keep rows and a watermark that describe events that are gone. `restore_log` restores the
eventlake way:

- The restore commit itself carries app transactions: `eventlake.seq` goes back to the last
  seq of the target version, and every batch key that landed after it is revoked. A Delta app
  transaction cannot be deleted, so a revoked key gets the version `REVOKED` (-1), which the
  duplicate check of `EventLog.append` reads as "not landed". The keys to rewind are those
  named by the `txn` actions of the commits after the target, read from `_delta_log/*.json`
  through the storage seam (so a lake on S3 works too); each goes back to its version at the
  target, or is revoked if it had none there.
- Before that commit, every view table under `<root>/views/` is reset, one commit per table:
  all its rows are removed and its bookkeeping says "not built", so the next `materialize()`
  rebuilds it from the restored log.

Why views first: a crash between the view resets and the log commit leaves reset views over
the unrestored log; the next `materialize()` rebuilds them from that log, which is exact, and
running the restore again finishes the job. In the other order a crash in between would leave
views whose rows and watermark describe removed events, and a watermark above the log's last
seq reads as "up to date": nothing would ever repair them. The log commit is one Delta commit,
so files, seq counter and batch keys go back together or not at all.

Why reset and not delete a view table: a reset is one atomic commit on every storage (deleting
a table on S3 is many requests, and a crash half-way leaves a broken table), and the table's
version keeps growing, so processes that hold the table open keep reading it correctly.

Writers and materializers must be stopped while restoring. What is detected: the log commit is
made on exactly the version that was planned, so an append that commits meanwhile makes the
restore fail with `CommitConflictError` (the log is unchanged); a view refresh that commits
after its view was reset and before the log commit makes that view be reset again. A refresh
that commits after the restore, having read the log before it, is not detected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from eventlake.errors import CommitConflictError, EventlakeError, LakeNotFoundError, RestoreError
from eventlake.store.log import BATCH_APP_PREFIX, EVENTS, SEQ_APP_ID
from eventlake.store.storage import Snapshot, Storage, retry_commit
from eventlake.store.tablefiles import list_folders, missing_files, read_commit
from eventlake.store.viewstore import view_app_id

if TYPE_CHECKING:
    from eventlake.store.parts import LakeParts

__all__ = [
    "RESET_VERSION",
    "REVOKED",
    "RemovedBatch",
    "RestorePlan",
    "RestoreResult",
    "plan_restore",
    "restore_log",
]

REVOKED = -1
VIEWS = "views"
# A reset view table: no generation is active and it was built for no view version (versions
# start at 1), which makes `materialize` rebuild it and every reader see no rows.
_NO_GENERATION = 0
RESET_VERSION = 0


@dataclass(frozen=True)
class RemovedBatch:
    """One append of the current log version that the restore takes out."""

    batch_id: str
    version: int
    first_seq: int | None
    count: int


@dataclass(frozen=True)
class RestorePlan:
    """What `restore_log` will do, computed by `plan_restore` without writing anything.

    `batches` are the appends the current version holds and the target does not, in commit
    order; `batch_keys_revoked` the `producer/batch_no` keys that can be appended again
    afterwards; `views` the view tables that will be reset; `transactions` the app
    transactions (app id, version) the restore commit writes.
    """

    root: str
    from_version: int
    to_version: int
    last_seq_before: int
    last_seq_after: int
    batches: tuple[RemovedBatch, ...]
    batch_keys_revoked: tuple[str, ...]
    views: tuple[str, ...]
    transactions: tuple[tuple[str, int], ...]

    @property
    def events_removed(self) -> int:
        return sum(b.count for b in self.batches)

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "from_version": self.from_version,
                "to_version": self.to_version, "last_seq_before": self.last_seq_before,
                "last_seq_after": self.last_seq_after, "events_removed": self.events_removed,
                "batches": [{"batch_id": b.batch_id, "version": b.version,
                             "first_seq": b.first_seq, "count": b.count}
                            for b in self.batches],
                "batch_keys_revoked": list(self.batch_keys_revoked),
                "views": list(self.views)}


@dataclass(frozen=True)
class RestoreResult:
    """What one `restore_log` did.

    `new_version` is the restore commit; `batches_revoked` are the `producer/batch_no` keys
    that can be appended again; `views_reset` the view tables the next `materialize()`
    rebuilds.
    """

    from_version: int
    to_version: int
    new_version: int
    last_seq_before: int
    last_seq_after: int
    events_removed: int
    batches_revoked: tuple[str, ...]
    views_reset: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"from_version": self.from_version, "to_version": self.to_version,
                "new_version": self.new_version, "last_seq_before": self.last_seq_before,
                "last_seq_after": self.last_seq_after, "events_removed": self.events_removed,
                "batches_revoked": list(self.batches_revoked),
                "views_reset": list(self.views_reset)}


def plan_restore(target: LakeParts | Storage, *, version: int | None = None,
                 timestamp: datetime | str | None = None) -> RestorePlan:
    """What restoring the event log to `version` (or to the newest version committed at or
    before `timestamp`) would remove; raises `RestoreError` if it cannot be done."""
    storage, _ = _storage_and_views(target)
    if not storage.exists(EVENTS):
        raise LakeNotFoundError(f"no event log at {storage.uri(EVENTS)}")
    current = Snapshot.load(storage, EVENTS)
    head = current.version
    to = _target_version(storage, head, version, timestamp)
    try:
        old = Snapshot.load(storage, EVENTS, version=to)
    except (DeltaError, EventlakeError) as exc:
        raise RestoreError(f"version {to} of the event log cannot be loaded (its log may have "
                           f"been cleaned up): {exc}", version=to, current=head) from exc
    _check_files(storage, old, current)
    batches, app_ids = _commits_after(storage, to, head)
    last_after = old.transaction_version(SEQ_APP_ID) or 0
    transactions = [(SEQ_APP_ID, last_after)]
    revoked: list[tuple[int, str]] = []
    for app in sorted(app_ids - {SEQ_APP_ID}):
        now = current.transaction_version(app)
        then = old.transaction_version(app)
        wanted = REVOKED if then is None else then
        if now == wanted:
            continue
        transactions.append((app, wanted))
        if app.startswith(BATCH_APP_PREFIX) and now is not None and now >= 0 and wanted < 0:
            revoked.append((now, app.removeprefix(BATCH_APP_PREFIX)))
    return RestorePlan(
        root=storage.root, from_version=head, to_version=to,
        last_seq_before=current.transaction_version(SEQ_APP_ID) or 0, last_seq_after=last_after,
        batches=tuple(batches), batch_keys_revoked=tuple(key for _, key in sorted(revoked)),
        views=tuple(_view_tables(storage)), transactions=tuple(transactions))


def restore_log(target: LakeParts | Storage, *, version: int | None = None,
                timestamp: datetime | str | None = None,
                expected_version: int | None = None) -> RestoreResult:
    """Restore the event log to `version` (or to the newest version committed at or before
    `timestamp`) with its seq counter and batch keys, and reset every view table.

    One Delta commit restores the log; each view table is reset before it (see the module
    doc for the order). With `expected_version`, nothing is written unless the log is still at
    that version (what the CLI showed the user). Raises `RestoreError` when the target is not
    older than the current version, does not exist or its files were vacuumed, and
    `CommitConflictError` when another writer committed to the log meanwhile.
    """
    plan = plan_restore(target, version=version, timestamp=timestamp)
    if expected_version is not None and plan.from_version != expected_version:
        raise CommitConflictError(
            f"the event log moved from version {expected_version} to {plan.from_version} since "
            "the restore was planned; nothing was changed: look at the plan again")
    storage, versions = _storage_and_views(target)
    # Views first, log second: see the module doc for why this is the crash-safe order.
    reset_at = {name: _reset_view(storage, name, versions.get(name)) for name in plan.views}
    new_version = _restore_events(storage, plan)
    for name, at in reset_at.items():
        if storage.table(VIEWS, name).version() != at:
            # A refresh committed after the reset, folding events this restore took out.
            _reset_view(storage, name, versions.get(name))
    return RestoreResult(plan.from_version, plan.to_version, new_version, plan.last_seq_before,
                         plan.last_seq_after, plan.events_removed, plan.batch_keys_revoked,
                         plan.views)


# -- planning --------------------------------------------------------------------------------


def _storage_and_views(target: LakeParts | Storage) -> tuple[Storage, dict[str, int]]:
    """The lake's storage and the versions of its registered views (none for a bare Storage)."""
    if isinstance(target, Storage):
        return target, {}
    return target.storage, {name: view.version for name, view in target.views.items()}


def _target_version(storage: Storage, head: int, version: int | None,
                    timestamp: datetime | str | None) -> int:
    if (version is None) == (timestamp is None):
        raise RestoreError("give either the version to restore the event log to or a "
                           "timestamp, not both and not neither", version=version, current=head)
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise RestoreError(f"the version to restore to must be an int >= 0, got "
                               f"{version!r}", current=head)
        if version >= head:
            raise RestoreError(f"version {version} is not older than the event log's current "
                               f"version {head}: nothing to restore", version=version,
                               current=head)
        return version
    assert timestamp is not None
    when = _as_utc(timestamp)
    # A table object of its own: `load_as_version` moves it, and the storage's shared one must
    # stay where it is.
    table = storage.table(EVENTS, version=head)
    created = _commit_time(storage, 0)
    if created is not None and created > when:
        raise RestoreError(f"the event log did not exist yet at {when.isoformat()} (created "
                           f"{created.isoformat()})", current=head)
    try:
        table.load_as_version(when)
    except DeltaError as exc:
        raise RestoreError(f"no version of the event log at {when.isoformat()}: {exc}",
                           current=head) from exc
    found = table.version()
    if found >= head:
        raise RestoreError(f"the newest version of the event log committed at or before "
                           f"{when.isoformat()} is {found}, the current version: nothing to "
                           "restore", version=found, current=head)
    return found


def _as_utc(timestamp: datetime | str) -> datetime:
    if isinstance(timestamp, str):
        try:
            timestamp = datetime.fromisoformat(timestamp)
        except ValueError:
            raise RestoreError(f"not an ISO 8601 timestamp: {timestamp!r}") from None
    # A time without a zone is taken as UTC, the zone of every time eventlake stores.
    return timestamp.replace(tzinfo=UTC) if timestamp.tzinfo is None else timestamp


def _commit_time(storage: Storage, version: int) -> datetime | None:
    actions = read_commit(storage, EVENTS, version) or []
    info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
    stamp = info.get("timestamp")
    return datetime.fromtimestamp(stamp / 1000, UTC) if isinstance(stamp, int) else None


def _check_files(storage: Storage, old: Snapshot, current: Snapshot) -> None:
    """Refuse before writing anything when a file the target needs was vacuumed.

    Delta's own check (`ignore_missing_files=False`) runs again at commit time, but by then
    the views are reset; this one keeps a refused restore from changing anything.
    """
    active = set(current.add_actions().column("path").to_pylist())
    wanted = [p for p in old.add_actions().column("path").to_pylist() if p not in active]
    missing = missing_files(storage, EVENTS, wanted)
    if missing:
        raise RestoreError(
            f"version {old.version} of the event log cannot be restored: {len(missing)} of its "
            f"data files are gone (deleted by a vacuum), first {missing[0]}; restore to a "
            "version younger than the vacuum retention", version=old.version,
            current=current.version)


def _commits_after(storage: Storage, to: int, head: int
                   ) -> tuple[list[RemovedBatch], set[str]]:
    """The appends of the current version made after `to`, and every app id those commits
    (and any commit after `to`) wrote.

    Walks back from the newest commit: a restore commit found on the way undid the commits
    between its target and itself, so their events are not in the current version.
    """
    batches: list[RemovedBatch] = []
    app_ids: set[str] = set()
    live_up_to = head
    for version in range(head, to, -1):
        actions = read_commit(storage, EVENTS, version)
        if actions is None:
            raise RestoreError(
                f"commit {version} of the event log is gone (Delta log retention), so the "
                f"batches that landed after version {to} cannot be told apart; restore to a "
                "later version", version=to, current=head)
        info: dict[str, Any] = {}
        for action in actions:
            if "txn" in action:
                app_ids.add(str(action["txn"]["appId"]))
            elif "commitInfo" in action:
                info = action["commitInfo"]
        if version > live_up_to:
            continue
        restored = _restored_version(info)
        if restored is not None:
            live_up_to = restored
        elif "eventlake.batch_id" in info:
            first = info.get("eventlake.first_seq")
            count = int(info.get("eventlake.count", 0))
            batches.append(RemovedBatch(str(info["eventlake.batch_id"]), version,
                                        int(first) if first is not None and count else None,
                                        count))
    batches.reverse()
    return batches, app_ids


def _restored_version(info: dict[str, Any]) -> int | None:
    """The version a restore commit went back to (None for other commits or when unknown)."""
    if info.get("operation") != "RESTORE":
        return None
    value = info.get("eventlake.restored_version",
                     (info.get("operationParameters") or {}).get("version"))
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _view_tables(storage: Storage) -> list[str]:
    """Every view table under `<root>/views/`, registered on this lake or not."""
    return [name for name in list_folders(storage, VIEWS) if storage.exists(VIEWS, name)]


# -- writing ---------------------------------------------------------------------------------


def _reset_view(storage: Storage, name: str, version: int | None) -> int:
    """Remove every row of a view table and mark it "not built", in one commit; its version.

    The app ids are those of `ViewStore` (`view_app_id`). Bumping `commits` makes a refresh
    in flight collide with the reset and re-read the table.
    """
    app = view_app_id(name)

    def attempt() -> int:
        table = storage.table(VIEWS, name)
        counter = (table.transaction_version(f"{app}/commits") or 0) + 1
        marks = {"commits": counter, "active": _NO_GENERATION, "active-version": RESET_VERSION,
                 "building": 0}
        if version is not None:
            marks[f"v{version}"] = 0
        # An empty overwrite writes no data file, so a lost race leaves nothing behind.
        base = table.version()
        with storage.writing(VIEWS, name, base=base, txn=(f"{app}/commits", counter),
                             note="nothing was committed; the event log was not restored"
                             ) as written:
            write_deltalake(
                table, pa.schema(table.schema()).empty_table(), mode="overwrite",
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(app_id=f"{app}/{k}", version=v)
                                      for k, v in marks.items()],
                    max_commit_retries=0,
                    custom_metadata={"eventlake.operation": "reset-view-for-restore"}))
        return table.version() if written.landed_at is None else written.landed_at

    return retry_commit(attempt, what=f"reset of view {name!r}")


def _restore_events(storage: Storage, plan: RestorePlan) -> int:
    """The restore commit of the event log, on exactly the planned version; its version."""
    table = storage.table(EVENTS)
    views = (f"; the views {', '.join(plan.views)} were reset and the next materialize "
             "rebuilds them" if plan.views else "")
    if table.version() != plan.from_version:
        raise CommitConflictError(
            f"another writer committed to the event log (version {table.version()}, planned "
            f"on {plan.from_version}); the log was not restored{views}. Stop the writers and "
            "restore again")
    try:
        # A restore commit only names files: it writes no data file of its own.
        with storage.writing(EVENTS, base=plan.from_version,
                             txn=(SEQ_APP_ID, plan.last_seq_after),
                             note=f"the log was not restored{views}"):
            table.restore(
                plan.to_version, ignore_missing_files=False, protocol_downgrade_allowed=False,
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(app_id=a, version=v)
                                      for a, v in plan.transactions],
                    # No retry: the plan (what to remove, which keys to revoke) holds only for
                    # the version it was made on.
                    max_commit_retries=0,
                    custom_metadata={"eventlake.operation": "restore",
                                     "eventlake.restored_version": str(plan.to_version),
                                     "eventlake.last_seq": str(plan.last_seq_after)}))
    except CommitFailedError as exc:
        raise CommitConflictError(
            f"another writer committed to the event log while it was being restored; the log "
            f"was not restored{views}. Stop the writers and restore again ({exc})") from exc
    except DeltaError as exc:
        raise RestoreError(f"the event log cannot be restored to version {plan.to_version}: "
                           f"{exc}; the log was not restored{views}", version=plan.to_version,
                           current=plan.from_version) from exc
    return plan.from_version + 1
