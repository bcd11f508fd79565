"""The on-disk proposal cache: one JSON file per image, written atomically.

`<cache_dir>/<image file stem>.json` holds
`{"file_name", "image_id", "height", "width", "proposals": [record, ...]}`, where a record is
what `SamAutomaticMaskGenerator(output_mode="coco_rle")` returns: `segmentation` (COCO RLE
`{"size": [h, w], "counts": str}`), `area`, `bbox` (xywh, pixels), `predicted_iou`,
`point_coords`, `stability_score`, `crop_box`. Only `segmentation` is required, so proposals
made elsewhere work too; a bare JSON list of records is also read. `run_config.json` beside
them records how they were made.

Files appear only complete: each is written to a temporary name in the same folder and
renamed over its final name (`os.replace`, atomic on POSIX).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

RUN_CONFIG = "run_config.json"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def proposal_path(cache_dir: str | Path, file_name: str) -> Path:
    """Cache file of an image: `<cache_dir>/<stem of file_name>.json`."""
    return Path(cache_dir) / f"{Path(file_name).stem}.json"


def read_proposals(path: str | Path) -> list[dict]:
    """The proposal records of one cache file (either layout), each checked for an RLE."""
    with open(path) as f:
        data = json.load(f)
    records = data if isinstance(data, list) else data.get("proposals")
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of records or an object with 'proposals'")
    for index, record in enumerate(records):
        rle = record.get("segmentation") if isinstance(record, dict) else None
        if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
            raise ValueError(f"{path}: proposal {index} has no COCO RLE 'segmentation' with 'size' and 'counts'")
    return records


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON so that `path` is either absent, the old file, or the whole new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "w") as f:
            json.dump(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def remove_stale_temps(cache_dir: str | Path) -> list[Path]:
    """Delete temporary files left by writers that are no longer running; return them."""
    removed = []
    for path in Path(cache_dir).glob(".*.tmp"):
        match = _TEMP.match(path.name)
        if match and not _alive(int(match.group("pid"))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
