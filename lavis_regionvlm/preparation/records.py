"""Compact storage for millions of small records, read lazily.

- `IndexedJsonlWriter` / `IndexedJsonl`: one JSON object a line in a ``.jsonl`` blob, and a
  ``(N + 1,)`` int64 ``.npy`` of line start offsets (bytes). A reader holds only the offsets
  (memory-mapped) and reads record i with one seek; its file handle is opened per process, so a
  dataset can be forked or pickled into DataLoader workers.
- `StringTable`: N strings as one UTF-8 byte array and ``(N + 1,)`` offsets. Unlike a list of
  str, forked workers share its pages (no reference counts to touch).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


class IndexedJsonlWriter:
    """Append records to ``<path>`` and write the offsets to ``<index_path>`` on close."""

    def __init__(self, path: str | Path, index_path: str | Path):
        self.path, self.index_path = Path(path), Path(index_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = open(self.path, "wb")
        self._offsets: list[int] = [0]

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (compact JSON, UTF-8, one line)."""
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        self._file.write(line)
        self._offsets.append(self._offsets[-1] + len(line))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def close(self) -> None:
        """Flush the blob and write the offsets."""
        self._file.close()
        np.save(self.index_path, np.asarray(self._offsets, dtype=np.int64))

    def __enter__(self) -> IndexedJsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class IndexedJsonl:
    """Random access to the records of an `IndexedJsonlWriter` output."""

    def __init__(self, path: str | Path, index_path: str | Path):
        self.path = str(path)
        self.offsets = np.load(index_path, mmap_mode="r")
        size = os.path.getsize(self.path)
        if self.offsets.ndim != 1 or len(self.offsets) == 0 or int(self.offsets[-1]) != size:
            raise ValueError(
                f"{index_path} does not index {self.path} (it ends at byte "
                f"{int(self.offsets[-1]) if self.offsets.size else 'none'}, the file has {size} bytes); "
                "prepare the data again"
            )
        self._file: BinaryIO | None = None
        self._pid = -1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range [0, {len(self)})")
        if self._file is None or self._pid != os.getpid():  # one handle per process
            self._file, self._pid = open(self.path, "rb"), os.getpid()
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        self._file.seek(start)
        return json.loads(self._file.read(end - start))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"], state["_pid"] = None, -1
        return state


class StringTable:
    """An immutable sequence of N strings in two numpy arrays."""

    def __init__(self, strings: Iterable[str]):
        encoded = [s.encode("utf-8") for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        self.offsets[1:] = np.cumsum(np.fromiter((len(b) for b in encoded), np.int64, len(encoded)))
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self):
            raise IndexError(f"string {index} out of range [0, {len(self)})")
        return self.blob[self.offsets[index]: self.offsets[index + 1]].tobytes().decode("utf-8")
