"""The on-disk proposal cache: one JSON file per image, written atomically, checked on read.

`<cache_dir>/<image file name>.json` (e.g. `cat.jpg.json`, so `cat.jpg` and `cat.png` never
share a file) holds
`{"file_name", "image_id", "height", "width", "image_bytes", "image_sha1_64k",
"num_proposals", "proposals": [record, ...]}`, where a record is what
`SamAutomaticMaskGenerator(output_mode="coco_rle")` returns: `segmentation` (COCO RLE
`{"size": [h, w], "counts": str}`), `area`, `bbox` (xywh, pixels), `predicted_iou`,
`point_coords`, `stability_score`, `crop_box`. `run_config.json` beside them records how
they were made.

Proposals made elsewhere work too: only `segmentation` is required, a bare JSON list of
records is read, and a file may be named after the image's file name, its stem
(`cat.json`, this package's older layout and the released script's folder naming) or its
image id (`500.json`, as other SAM pipelines write them). Exactly one of these may exist
for an image; two are an error naming both. A stem-named file without a `file_name` header
is refused when two images of the set share the stem.

Every read is checked (`read_proposals`): valid JSON, records with a COCO RLE whose run
lengths add up to h*w, one size for all records, no empty list unless the header says SAM
found nothing (`num_proposals: 0`), and, given the image, the header's file name, id,
size and content fingerprint (byte count and SHA-1 of the first 64 KiB) and the masks'
size must be the image's. Anything else is a `ProposalFileError` naming the file.

Files appear only complete: each is written to a temporary name in the same folder and
renamed over its final name (`os.replace`, atomic on POSIX).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from lavis_regionvlm.regions.masks import RegionError, _as_runs, _runs_from_compressed, check_size

RUN_CONFIG = "run_config.json"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")
FINGERPRINT_BYTES = 64 * 1024
REGENERATE = "delete it and rerun `python -m lavis_regionvlm.ris.proposals` to make it again"


class ProposalFileError(ValueError):
    """A proposal file that is unreadable, corrupted, ambiguous, or another image's."""


@dataclass(frozen=True)
class ImageKey:
    """What identifies the image a proposal file must belong to.

    file_name: the image's file name (relative to the image root), e.g. "cat.jpg".
    height, width: its size in pixels.
    image_id: its dataset id, when it has one.
    image_bytes, image_sha1_64k: its content fingerprint (`image_fingerprint`), when known.
    """

    file_name: str
    height: int
    width: int
    image_id: Optional[int] = None
    image_bytes: Optional[int] = None
    image_sha1_64k: Optional[str] = None


def image_fingerprint(path: str | Path) -> dict[str, Any]:
    """`{"image_bytes": file size, "image_sha1_64k": SHA-1 hex of its first 64 KiB}`: cheap,
    and tells two images of the same size apart."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(FINGERPRINT_BYTES)
    return {"image_bytes": path.stat().st_size, "image_sha1_64k": hashlib.sha1(head).hexdigest()}


def proposal_path(cache_dir: str | Path, file_name: str) -> Path:
    """Cache file of an image: `<cache_dir>/<file_name>.json` (the full name, suffix kept)."""
    return Path(cache_dir) / f"{file_name}.json"


def proposal_candidates(cache_dir: str | Path, file_name: str, image_id: Optional[int] = None) -> list[Path]:
    """The names an image's proposal file may have, most specific first: `<file_name>.json`,
    `<stem>.json`, `<image_id>.json` (each once)."""
    stem = Path(file_name).with_suffix("")
    names = [proposal_path(cache_dir, file_name), Path(cache_dir) / f"{stem}.json"]
    if image_id is not None:
        names.append(Path(cache_dir) / f"{image_id}.json")
    return list(dict.fromkeys(names))


def find_proposal_file(
    cache_dir: str | Path, file_name: str, image_id: Optional[int] = None, same_stem: Sequence[str] = ()
) -> Path:
    """The one existing proposal file of an image (see `proposal_candidates`).

    same_stem: other images of the set whose file names share this one's stem; a
        stem-named file could be theirs, so it is taken only if its header names this image.
    Raises FileNotFoundError when none exists, `ProposalFileError` when several do.
    """
    candidates = proposal_candidates(cache_dir, file_name, image_id)
    found = [path for path in candidates if path.is_file()]
    what = f"image {image_id} ({file_name})" if image_id is not None else file_name
    if not found:
        raise FileNotFoundError(
            f"no proposals for {what} in {cache_dir}: looked for "
            f"{', '.join(p.name for p in candidates)}; run `python -m lavis_regionvlm.ris.proposals` "
            "over these images first"
        )
    if len(found) > 1:
        raise ProposalFileError(
            f"two proposal files could be {what}'s: {found[0]} and {found[1]}; "
            "keep the right one and move the other away"
        )
    path = found[0]
    if same_stem and path == candidates[1] and path != candidates[0]:
        header = _load(path)
        named = header.get("file_name") if isinstance(header, dict) else None
        if named != file_name:
            raise ProposalFileError(
                f"{path} is named after the stem that {file_name} shares with {', '.join(same_stem)}, "
                f"and {'it holds the proposals of ' + repr(named) if named else 'it does not say which image it is'}; "
                f"{REGENERATE} (files are now named <file name>.json)"
            )
    return path


def read_proposals(path: str | Path, image: Optional[ImageKey] = None) -> list[dict]:
    """The checked proposal records of one cache file (either layout).

    Without `image`, the file is checked on its own (JSON, records, RLE run lengths, one
    size, header consistency); with it, also that it belongs to that image.
    Raises `ProposalFileError` naming the file and the problem.
    """
    data = _load(path)
    if isinstance(data, list):
        header, records = {}, data
    elif isinstance(data, dict):
        header, records = data, data.get("proposals")
        if not isinstance(records, list):
            raise ProposalFileError(
                f"{path}: expected a list of records or an object with a 'proposals' list, "
                f"got an object with keys {sorted(data)[:8]}; {REGENERATE}"
            )
    else:
        raise ProposalFileError(
            f"{path}: expected a list of records or an object with 'proposals', got "
            f"{json.dumps(data)[:40]}; {REGENERATE}"
        )
    size = _check_records(path, records)
    _check_header(path, header, records, size)
    if image is not None:
        _check_image(path, header, size, image)
    return records


def _load(path: str | Path) -> Any:
    """The parsed JSON of a proposal file; an unreadable file is a `ProposalFileError`."""
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ProposalFileError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); {REGENERATE}"
        ) from None
    except UnicodeDecodeError:
        raise ProposalFileError(f"{path}: not a text (JSON) file; {REGENERATE}") from None
    except IsADirectoryError:
        raise ProposalFileError(f"{path}: a folder, not a proposal file") from None


def _check_records(path: str | Path, records: list) -> Optional[tuple[int, int]]:
    """Check every record's COCO RLE; return the (h, w) they share (None for no records)."""
    size = None
    for index, record in enumerate(records):
        rle = record.get("segmentation") if isinstance(record, dict) else None
        if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
            raise ProposalFileError(
                f"{path}: proposal {index} has no COCO RLE 'segmentation' with 'size' and 'counts'; {REGENERATE}"
            )
        try:
            height, width = check_size(rle["size"])
            counts = rle["counts"]
            runs = _runs_from_compressed(counts) if isinstance(counts, str) else _as_runs(counts)
        except RegionError as exc:
            raise ProposalFileError(f"{path}: proposal {index}: {exc}; {REGENERATE}") from None
        if any(r < 0 for r in runs) or sum(runs) != height * width:
            raise ProposalFileError(
                f"{path}: proposal {index}'s RLE run lengths add up to {sum(runs)}, but its size "
                f"{height}x{width} needs {height * width} (a damaged file); {REGENERATE}"
            )
        if size is None:
            size = (height, width)
        elif (height, width) != size:
            raise ProposalFileError(
                f"{path}: proposals of two sizes: proposal 0 is {size[0]}x{size[1]}, proposal {index} "
                f"is {height}x{width} (h x w); one file holds one image's masks; {REGENERATE}"
            )
    return size


def _check_header(path: str | Path, header: dict, records: list, size: Optional[tuple[int, int]]) -> None:
    """The header's own consistency: its count and size agree with the records."""
    count = header.get("num_proposals")
    if count is not None and count != len(records):
        raise ProposalFileError(
            f"{path}: says {count} proposals but holds {len(records)} (a damaged or edited file); {REGENERATE}"
        )
    if not records and count != 0:
        raise ProposalFileError(
            f"{path}: holds no proposals (and no 'num_proposals': 0 saying SAM found none); {REGENERATE}"
        )
    declared = (header.get("height"), header.get("width"))
    if size is not None and None not in declared and tuple(declared) != size:
        raise ProposalFileError(
            f"{path}: says the image is {declared[0]}x{declared[1]} but its masks are "
            f"{size[0]}x{size[1]} (h x w); {REGENERATE}"
        )


def _check_image(path: str | Path, header: dict, size: Optional[tuple[int, int]], image: ImageKey) -> None:
    """That a checked file belongs to `image`: header fields where present, mask size always."""
    named = header.get("file_name")
    if named is not None and named != image.file_name:
        raise ProposalFileError(
            f"{path}: holds the proposals of {named!r}, not of {image.file_name!r}; {REGENERATE}"
        )
    if header.get("image_id") is not None and image.image_id is not None and header["image_id"] != image.image_id:
        raise ProposalFileError(
            f"{path}: holds the proposals of image id {header['image_id']}, not of {image.image_id} "
            f"({image.file_name}); {REGENERATE}"
        )
    for key in ("image_bytes", "image_sha1_64k"):
        if header.get(key) is not None and getattr(image, key) is not None and header[key] != getattr(image, key):
            raise ProposalFileError(
                f"{path}: was made from another {image.file_name} ({key} {header[key]} there, "
                f"{getattr(image, key)} now): the image file changed since; {REGENERATE}"
            )
    actual = (image.height, image.width)
    for what, found in (("its masks are", size), ("it says the image is", (header.get("height"), header.get("width")))):
        if found is not None and None not in found and tuple(found) != actual:
            raise ProposalFileError(
                f"{path}: {what} {found[0]}x{found[1]}, but {image.file_name} is {actual[0]}x{actual[1]} "
                f"(h x w); {REGENERATE}"
            )


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
