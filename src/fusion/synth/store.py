"""Append-only JSONL stores with content-derived ids: restarts skip finished records, never duplicate."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def content_id(*parts: Any) -> str:
    """A stable id from content (the same input always gets the same id, on any machine)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def in_shard(record_id: str, shard: tuple[int, int]) -> bool:
    index, count = shard
    return int(record_id[:8], 16) % count == index


class JsonlStore:
    """One JSON object per line, each with an ``id``. A line cut short by a crash is dropped on open."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ids: set[str] = set()
        if self.path.exists():
            self._recover()

    def _recover(self) -> None:
        data = self.path.read_bytes()
        good_end = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            self.ids.add(record["id"])
            good_end += len(line)
        if good_end != len(data):  # a torn last write: cut it off, its record will be redone
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.ids

    def append(self, record: dict[str, Any]) -> None:
        if record["id"] in self.ids:
            return
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.ids.add(record["id"])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
