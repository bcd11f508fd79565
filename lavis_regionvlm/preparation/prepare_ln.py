"""Prepare raw Localized Narratives JSONL (image or video) for training.

    python -m lavis_regionvlm.preparation.prepare_ln --input A.jsonl [B.jsonl ...] --images IMAGE_ROOT \
        --output DIR [--image-template TEMPLATE ...] [--captions-out CAPTIONS.json] [--workers N] \
        [--video-mode subject|phrases] [--max-missing-fraction F]

All inputs of one call share one image root (e.g. the ten Open Images shards); prepare each
source (COCO, Open Images, Flickr30k, ADE20k, each video dataset) into its own folder and list
the folders in the dataset config. The image of a sample is
``IMAGE_ROOT / TEMPLATE.format(**fields)``, with the record's own ids as fields, so a narrative
can only be paired with its own image (fields: ``image_id``, ``dataset_id`` for image LN;
``video_id``, ``keyframe_name``, ``kf_idx``, ``dataset_id`` for video LN). Without
``--image-template`` the templates are chosen per record from its ``dataset_id`` and tried in
order, the first existing file wins (`ln_layouts`: COCO 2017/2014 zero-padded names, incl.
``mscoco_train2017`` spanning train2014 and val2014; Flickr30k; ADE20k; Open Images; video
frames ``.jpg`` then ``.png``); several ``--image-template`` are tried in the order given.
``--video-mode`` (video LN only):
``subject`` (default, as released: one sample per actor and keyframe, the whole caption with the
points of the subject's words) or ``phrases`` (ours: the caption split into phrases like an
image narrative); see `lavis_regionvlm.preparation.narratives`.

Writes DIR (see `ln_prepared`), prints and stores (in DIR/meta.json) the skip counts by kind
and the templates that found the images. Samples whose image file is missing are dropped and
counted; the command exits 1 with a hint when it kept nothing, or when more than
``--max-missing-fraction`` (default 0.05) of the samples had no image file (the folder is
still written; a larger value accepts it). ``--captions-out`` also writes the
full captions of the image narratives kept, in COCO-captions format
(``[{"image", "caption", "image_id"}]``, image relative to IMAGE_ROOT), usable as global
image-caption pairs.
"""
from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lavis_regionvlm.preparation import ln_prepared
from lavis_regionvlm.preparation.ln_layouts import candidate_templates
from lavis_regionvlm.preparation.narratives import MAX_STORED_POINTS, VIDEO_MODES, parse_narrative
from lavis_regionvlm.preparation.records import IndexedJsonlWriter
from lavis_regionvlm.preparation.skips import format_counts

_CHUNK_LINES = 512
MAX_MISSING_FRACTION = 0.05
_MISSING_EXAMPLES = 3

# A chunk's parse: per line, its records (each a list of samples: fields, text, encoded
# points) and, for an image narrative with samples, its caption; and the chunk's skip counts.
_Encoded = tuple[dict, str, list[int]]
_Parsed = tuple[list[tuple[list[list[_Encoded]], str | None]], Counter]


def _parse_chunk(lines: list[bytes], video_mode: str) -> _Parsed:
    """Parse raw lines (runs in worker processes)."""
    skips: Counter = Counter()
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            skips["malformed_json"] += 1
            continue
        records = parse_narrative(record, skips, video_mode)
        encoded = [[(s.fields, s.text, ln_prepared.encode_points(s.points)) for s in samples] for samples in records]
        caption = record["caption"] if records and "video_id" not in records[0][0].fields else None
        out.append((encoded, caption))
    return out, skips


def _chunks(paths: Sequence[Path], line_counts: Counter) -> Iterator[list[bytes]]:
    """Non-blank lines of every input, in order, `_CHUNK_LINES` at a time."""
    chunk: list[bytes] = []
    for path in paths:
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    line_counts[str(path)] += 1
                    chunk.append(line)
                    if len(chunk) == _CHUNK_LINES:
                        yield chunk
                        chunk = []
    if chunk:
        yield chunk


def _image_paths(templates: Sequence[str] | None, fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(template, relative path) pairs to try for a sample, in order."""
    kind = "video" if "video_id" in fields else "image"
    pairs = []
    for template in templates or candidate_templates(fields):
        try:
            pairs.append((template, template.format(**fields)))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"image template {template!r} cannot be filled for a {kind} narrative ({exc!r}); "
                f"its fields are {sorted(fields)}, e.g. {fields}"
            ) from None
    return pairs


def preparation_problem(meta: dict[str, Any], max_missing_fraction: float = MAX_MISSING_FRACTION) -> str | None:
    """Why a preparation should not be used as is (nothing kept, or too many images missing),
    with the hint; None when it is fine."""
    missing = meta["skip_counts"].get("missing_image", 0)
    total = meta["num_samples"] + missing
    if meta["num_samples"] == 0:
        return f"kept no sample: {ln_prepared.missing_images_hint(meta)}"
    if total and missing / total > max_missing_fraction:
        return (f"{missing} of {total} samples ({100 * missing / total:.1f}%) had no image file, more than "
                f"--max-missing-fraction {max_missing_fraction}: {ln_prepared.missing_images_hint(meta)}; "
                f"or, if those images are missing on purpose, rerun with a larger --max-missing-fraction")
    return None


def prepare_ln(
    inputs: Sequence[str | Path],
    images: str | Path,
    output: str | Path,
    image_template: str | Sequence[str] | None = None,
    captions_out: str | Path | None = None,
    workers: int = 1,
    video_mode: str = "subject",
) -> dict[str, Any]:
    """Prepare `inputs` into the folder `output`; returns the meta.json content.

    Args:
        inputs: raw LN JSONL files (image or video records; one source, one image root).
        images: the image root; a sample whose file is missing there is dropped and counted.
        output: folder to write (created; existing prepared files are replaced).
        image_template: file name under `images` (str.format fields, see the module doc), or
            several tried in order; None: chosen per record from its dataset_id (`ln_layouts`).
        captions_out: where to write the kept image narratives' captions (COCO-captions JSON).
        workers: parsing processes (1: parse in this process).
        video_mode: how video narratives become samples, one of `narratives.VIDEO_MODES`.
    """
    if video_mode not in VIDEO_MODES:
        raise ValueError(f"video_mode must be one of {VIDEO_MODES}, got {video_mode!r}")
    started = time.perf_counter()
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"input {path} does not exist")
    root = Path(images).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image root {root} is not a folder")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    (out / ln_prepared.META_FILE).unlink(missing_ok=True)

    templates = [image_template] if isinstance(image_template, str) else image_template
    skips: Counter = Counter()
    line_counts: Counter = Counter()
    found: dict[tuple[str, ...], tuple[str, str] | None] = {}  # candidates -> (template, path) found, or None
    found_by: Counter = Counter()  # template -> samples whose image it found
    missing_examples: list[str] = []
    captions: list[dict[str, str]] = []
    narratives = 0
    record_starts = [0]
    parse = functools.partial(_parse_chunk, video_mode=video_mode)
    pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
    parsed = pool.imap(parse, _chunks(paths, line_counts)) if pool else map(parse, _chunks(paths, line_counts))
    try:
        with IndexedJsonlWriter(out / ln_prepared.SAMPLES_FILE, out / ln_prepared.INDEX_FILE) as writer:
            for lines, chunk_skips in parsed:
                skips.update(chunk_skips)
                for records, caption in lines:
                    kept = []
                    for samples in records:
                        for fields, text, points in samples:
                            tried = _image_paths(templates, fields)
                            key = tuple(rel for _, rel in tried)  # the files are looked up once per image
                            if key not in found:
                                found[key] = next(((t, r) for t, r in tried if os.path.isfile(root / r)), None)
                            if found[key] is None:
                                skips["missing_image"] += 1
                                example = " or ".join(rel for _, rel in tried)
                                if len(missing_examples) < _MISSING_EXAMPLES and example not in missing_examples:
                                    missing_examples.append(example)
                                continue
                            template, rel = found[key]
                            found_by[template] += 1
                            writer.write({"image": rel, "text": text, "points": points})
                            kept.append(rel)
                        if len(writer) > record_starts[-1]:
                            record_starts.append(len(writer))
                    narratives += bool(kept)
                    if kept and caption is not None:  # an image narrative: one image for all its samples
                        captions.append({"image": kept[0], "caption": caption,
                                         "image_id": records[0][0][0]["image_id"]})
            num_samples = len(writer)
        np.save(out / ln_prepared.RECORDS_FILE, np.asarray(record_starts, dtype=np.int64))
    finally:
        if pool:
            pool.terminate()

    if captions_out is not None:
        Path(captions_out).parent.mkdir(parents=True, exist_ok=True)
        Path(captions_out).write_text(json.dumps(captions), encoding="utf-8")
    meta = {
        "format": ln_prepared.FORMAT,
        "version": ln_prepared.VERSION,
        "images": str(root),
        "image_template": image_template,
        "max_points": MAX_STORED_POINTS,
        "video_mode": video_mode,
        "point_scale": ln_prepared.POINT_SCALE,
        "inputs": [{"path": str(p.resolve()), "bytes": p.stat().st_size, "lines": line_counts[str(p)]} for p in paths],
        "num_samples": num_samples,
        "num_narratives": narratives,
        "num_records": len(record_starts) - 1,
        "num_captions": len(captions) if captions_out is not None else None,
        "skip_counts": {kind: n for kind, n in sorted(skips.items()) if n},
        "found_by_template": dict(found_by.most_common()),
        "missing_examples": missing_examples,
        "seconds": round(time.perf_counter() - started, 3),
    }
    (out / ln_prepared.META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return meta


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry: prepare, print the counts, return the meta."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", nargs="+", required=True, help="raw LN JSONL file(s) of one source")
    parser.add_argument("--images", required=True, help="image root of these files")
    parser.add_argument("--output", required=True, help="prepared folder to write")
    parser.add_argument("--image-template", action="append", default=None,
                        help="image file under --images (str.format of the record's ids); repeat to try "
                             "several in order (default: chosen per dataset_id, see ln_layouts.py)")
    parser.add_argument("--captions-out", default=None, help="also write the captions, COCO-captions JSON")
    parser.add_argument("--workers", type=int, default=1, help="parsing processes")
    parser.add_argument("--video-mode", choices=VIDEO_MODES, default="subject",
                        help="video LN: subject (as released: whole caption, the subject's points) or "
                             "phrases (ours: split into phrases)")
    parser.add_argument("--max-missing-fraction", type=float, default=MAX_MISSING_FRACTION,
                        help="exit 1 when more than this share of the samples has no image file "
                             f"(default {MAX_MISSING_FRACTION})")
    args = parser.parse_args(argv)
    meta = prepare_ln(args.input, args.images, args.output, args.image_template, args.captions_out, args.workers,
                      args.video_mode)
    lines = sum(i["lines"] for i in meta["inputs"])
    print(f"{args.output}: {meta['num_samples']} samples in {meta['num_records']} records from "
          f"{meta['num_narratives']} narratives "
          f"({lines} lines) in {meta['seconds']:.1f} s")
    print(f"skipped: {format_counts(meta['skip_counts'])}")
    print(f"images found by: {', '.join(f'{t} ({n})' for t, n in meta['found_by_template'].items()) or 'none'}")
    problem = preparation_problem(meta, args.max_missing_fraction)
    if problem:
        print(f"prepare_ln: error: {args.output} {problem}", file=sys.stderr)
        raise SystemExit(1)
    return meta


if __name__ == "__main__":
    main()
