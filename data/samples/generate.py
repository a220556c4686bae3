"""Generate the sample inbox in this folder, deterministically (seeded; stdlib + pyarrow).

    python data/samples/generate.py            # rewrite the files next to this script
    python data/samples/generate.py OUT_DIR    # write them somewhere else

The state actions are generated against a small model of each document, so that every action
applies cleanly in seq order (a tree target exists before the first treePush, moves never go
under the node's own subtree, updates and deletes name live nodes). The test suite checks this
with `eventlake.actions.apply_action`.
"""

from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240301
WORKSPACES = [f"workspace-{i}" for i in range(1, 7)]
ACCOUNTS = [f"acct-{i:03d}" for i in range(1, 41)]
START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
ROOT = "_root"

Event = dict[str, Any]


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class Clock:
    """Event time moving forward by a few seconds to minutes per event."""

    def __init__(self, rng: random.Random, start: datetime) -> None:
        self.rng = rng
        self.now = start

    def tick(self) -> datetime:
        self.now += timedelta(seconds=self.rng.randint(5, 900))
        return self.now


@dataclass
class Workspace:
    """What the generator needs to know of one workspace document to stay valid."""

    name: str
    parent: dict[str, str] = field(default_factory=dict)  # node id -> parent id (or _root)
    kind: dict[str, str] = field(default_factory=dict)
    members: set[str] = field(default_factory=set)
    notify: bool = False
    counter: int = 0

    def folders(self) -> list[str]:
        return [n for n, k in self.kind.items() if k == "folder"]

    def subtree(self, node: str) -> set[str]:
        found = {node}
        changed = True
        while changed:
            changed = False
            for child, parent in self.parent.items():
                if parent in found and child not in found:
                    found.add(child)
                    changed = True
        return found

    def siblings(self, parent: str, *, besides: str | None = None) -> list[str]:
        return [n for n, p in self.parent.items() if p == parent and n != besides]


NAMES = ["notes", "budget", "roadmap", "specs", "photos", "drafts", "archive", "ideas",
         "reports", "invoices", "design", "minutes"]
THEMES = ["light", "dark", "solarized"]
ROLES = ["viewer", "editor", "admin"]


def position(rng: random.Random, ws: Workspace, parent: str, besides: str | None = None
             ) -> str | dict[str, str]:
    siblings = ws.siblings(parent, besides=besides)
    roll = rng.random()
    if siblings and roll < 0.25:
        return {"after": rng.choice(siblings)}
    if siblings and roll < 0.4:
        return {"before": rng.choice(siblings)}
    return "first" if roll < 0.55 else "last"


def workspace_action(rng: random.Random, ws: Workspace) -> tuple[str, dict[str, Any]]:
    """One state action that applies cleanly to the modelled document."""
    nodes = list(ws.kind)
    roll = rng.random()
    if not nodes or roll < 0.35:
        ws.counter += 1
        node = f"n{ws.counter}"
        kind = "folder" if rng.random() < 0.35 or not ws.folders() else "file"
        parent = rng.choice([ROOT, *ws.folders()]) if ws.folders() else ROOT
        value: dict[str, Any] = {"id": node, "name": f"{rng.choice(NAMES)}-{ws.counter}",
                                 "kind": kind}
        if kind == "file":
            value["size"] = rng.randint(100, 5_000_000)
        options: dict[str, Any] = {"parent": parent, "position": position(rng, ws, parent)}
        ws.parent[node], ws.kind[node] = parent, kind
        return "treePush", {"target": "files", "value": value, "options": options}
    if roll < 0.55:
        node = rng.choice(nodes)
        if rng.random() < 0.2:
            value = {"name": f"{rng.choice(NAMES)}-renamed", "kind": ws.kind[node]}
            return "treeUpdate", {"target": "files", "value": value,
                                  "options": {"id": node, "replace": True}}
        value = rng.choice([{"name": f"{rng.choice(NAMES)}-v{rng.randint(2, 9)}"},
                            {"starred": rng.random() < 0.5},
                            {"tags": rng.sample(["red", "blue", "green", "todo"], 2)}])
        return "treeUpdate", {"target": "files", "value": value, "options": {"id": node}}
    if roll < 0.68:
        node = rng.choice(nodes)
        blocked = ws.subtree(node)
        parents = [ROOT, *(f for f in ws.folders() if f not in blocked)]
        parent = rng.choice(parents)
        options = {"id": node, "parent": parent,
                   "position": position(rng, ws, parent, besides=node)}
        ws.parent[node] = parent
        return "treeMove", {"target": "files", "options": options}
    if roll < 0.74 and len(nodes) > 3:
        node = rng.choice(nodes)
        for gone in ws.subtree(node):
            del ws.parent[gone], ws.kind[gone]
        return "treeDelete", {"target": "files", "options": {"id": node}}
    if roll < 0.82:
        settings: list[tuple[str, Any]] = [
            ("settings.theme", rng.choice(THEMES)),
            ("settings.locale", rng.choice(["en", "de", "fr", "ja"])),
            ("settings.notifications.email", True),
            ("settings.limits", {"maxFiles": rng.choice([100, 500, 1000])}),
        ]
        target, setting = rng.choice(settings)
        if target == "settings.notifications.email":
            ws.notify = True
        return "set", {"target": target, "value": setting}
    if roll < 0.88:
        # Arrays can only be set with options.replace (insieme rejects a merge into a list).
        layout = rng.sample(["grid", "list", "tree", "board"], rng.randint(1, 3))
        return "set", {"target": "settings.layout", "value": layout,
                       "options": {"replace": True}}
    if roll < 0.95 or not ws.members:
        member = f"u{rng.randint(2, 9)}"
        ws.members.add(member)
        return "set", {"target": f"members.{member}", "value": {"role": rng.choice(ROLES)}}
    if ws.notify and rng.random() < 0.5:
        ws.notify = False
        return "unset", {"target": "settings.notifications.email"}
    member = rng.choice(sorted(ws.members))
    ws.members.discard(member)
    return "unset", {"target": f"members.{member}"}


def workspace_opening(ws: Workspace, number: int) -> list[tuple[str, dict[str, Any]]]:
    ws.members.add("u1")
    return [
        ("set", {"target": "settings",
                 "value": {"name": f"Workspace {number}", "theme": "light", "locale": "en"}}),
        # treePush needs its target object to exist: create the (empty) file tree first.
        ("set", {"target": "files", "value": {}}),
        ("set", {"target": "members", "value": {"u1": {"role": "owner"}},
                 "options": {"replace": True}}),
    ]


@dataclass
class Account:
    currency: str
    balance: int = 0  # cents


def money_event(rng: random.Random, account: Account, counter: list[int]) -> tuple[str, Event]:
    """A deposit or a withdrawal that never overdraws the modelled balance."""
    counter[0] += 1
    ref = f"tx-{counter[0]:06d}"
    if account.balance < 1_000 or rng.random() < 0.55:
        amount = rng.choice([rng.randint(1_000, 50_000), rng.randint(50_000, 500_000)])
        account.balance += amount
        payload = {"amount": amount, "currency": account.currency, "ref": ref,
                   "source": rng.choice(["salary", "transfer", "cash", "refund"])}
        return "deposit", payload
    amount = rng.randint(100, min(account.balance, 200_000))
    account.balance -= amount
    payload = {"amount": amount, "currency": account.currency, "ref": ref,
               "channel": rng.choice(["card", "atm", "transfer"])}
    return "withdrawal", payload


def generate(out: Path) -> dict[str, int]:
    rng = random.Random(SEED)
    clock = Clock(rng, START)
    counts: dict[str, int] = {}
    workspaces = {p: Workspace(p) for p in WORKSPACES}

    # 01: insieme state actions on one document per workspace.
    events: list[Event] = []
    for number, (partition, ws) in enumerate(workspaces.items(), start=1):
        for kind, payload in workspace_opening(ws, number):
            events.append({"type": kind, "payload": payload, "partition": partition})
    for _ in range(560):
        partition = rng.choice(WORKSPACES)
        kind, payload = workspace_action(rng, workspaces[partition])
        events.append({"type": kind, "payload": payload, "partition": partition})
    for index, event in enumerate(events, start=1):
        event["event_id"] = f"ws-{index:05d}"
        event["ts"] = iso(clock.tick())
    counts["01-workspaces.jsonl"] = write_jsonl(out / "01-workspaces.jsonl", events)

    # 02: domain events as CSV with a JSON payload column.
    accounts = {p: Account(rng.choice(["EUR", "EUR", "USD"])) for p in ACCOUNTS}
    counter = [0]
    rows: list[Event] = []
    for partition in ACCOUNTS:  # every account opens with a deposit
        account = accounts[partition]
        while True:
            kind, payload = money_event(rng, account, counter)
            if kind == "deposit":
                break
        rows.append({"type": kind, "payload": payload, "partition": partition})
    for _ in range(460):
        partition = rng.choice(ACCOUNTS)
        kind, payload = money_event(rng, accounts[partition], counter)
        rows.append({"type": kind, "payload": payload, "partition": partition})
    clock = Clock(rng, START + timedelta(days=7))
    for index, row in enumerate(rows, start=1):
        row["event_id"] = f"acct-csv-{index:05d}"
        row["ts"] = iso(clock.tick())
    counts["02-accounts.csv"] = write_csv(out / "02-accounts.csv", rows)

    # 03: more of the same as Parquet (partition_id column, ts as a UTC timestamp).
    rows = []
    for _ in range(400):
        partition = rng.choice(ACCOUNTS)
        kind, payload = money_event(rng, accounts[partition], counter)
        rows.append({"type": kind, "payload": payload, "partition": partition})
    clock = Clock(rng, START + timedelta(days=21))
    stamps = [clock.tick() for _ in rows]
    table = pa.table({
        "type": pa.array([r["type"] for r in rows], pa.string()),
        "payload": pa.array([json.dumps(r["payload"]) for r in rows], pa.string()),
        "partition_id": pa.array([r["partition"] for r in rows], pa.string()),
        "event_id": pa.array([f"acct-pq-{i:05d}" for i in range(1, len(rows) + 1)], pa.string()),
        "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, out / "03-accounts.parquet", compression="zstd")
    counts["03-accounts.parquet"] = table.num_rows

    # 04: state actions and domain events mixed in the same partitions; no ts (the lake
    # stamps ingest time) and event ids only on some records (the lake generates the rest).
    mixed: list[Event] = []
    profiled: set[str] = set()
    for _ in range(300):
        roll = rng.random()
        if roll < 0.35:
            partition = rng.choice(ACCOUNTS[:12])
            if partition not in profiled:
                profiled.add(partition)
                kind, payload = "set", {"target": "profile",
                                        "value": {"owner": f"Owner {partition[-3:]}",
                                                  "tier": "basic"}}
            else:
                choices: list[tuple[str, dict[str, Any]]] = [
                    ("set", {"target": "profile.tier", "value": rng.choice(["basic", "gold"])}),
                    ("set", {"target": "limits", "value": {"daily": rng.choice([20_000,
                                                                                 50_000])}}),
                    ("set", {"target": "profile.contact.email",
                             "value": f"{partition}@example.com"}),
                ]
                kind, payload = rng.choice(choices)
        elif roll < 0.65:
            partition = rng.choice(ACCOUNTS[:12])
            kind, payload = money_event(rng, accounts[partition], counter)
        elif roll < 0.85:
            partition = rng.choice(WORKSPACES)
            kind, payload = workspace_action(rng, workspaces[partition])
        else:
            partition = rng.choice(WORKSPACES)
            ws = workspaces[partition]
            node = rng.choice(sorted(ws.kind)) if ws.kind else None
            kind, payload = rng.choice([
                ("comment.added", {"node": node, "author": f"u{rng.randint(1, 9)}",
                                   "text": rng.choice(["looks good", "needs work", "ship it",
                                                       "späť na úpravu", "✔ done"])}),
                ("file.viewed", {"node": node, "by": f"u{rng.randint(1, 9)}"}),
            ])
        record: Event = {"type": kind, "payload": payload, "partition": partition}
        if rng.random() < 0.5:
            record["event_id"] = f"mixed-{len(mixed) + 1:05d}"
        mixed.append(record)
    counts["04-mixed.jsonl"] = write_jsonl(out / "04-mixed.jsonl", mixed)
    return counts


def write_jsonl(path: Path, events: list[Event]) -> int:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for event in events:
            handle.write(json.dumps(event, ensure_ascii=False) + "\n")
    return len(events)


def write_csv(path: Path, rows: list[Event]) -> int:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["type", "payload", "partition", "event_id", "ts"])
        for row in rows:
            writer.writerow([row["type"], json.dumps(row["payload"]), row["partition"],
                             row["event_id"], row["ts"]])
    return len(rows)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    target.mkdir(parents=True, exist_ok=True)
    for name, count in generate(target).items():
        print(f"{name}: {count} events")
