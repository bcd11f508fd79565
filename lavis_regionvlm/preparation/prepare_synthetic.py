"""Prepare the Localized Narratives of a synthetic dataset (`lavis_regionvlm.preparation.synthetic`).

    python -m lavis_regionvlm.preparation.prepare_synthetic --root DIR [--workers N]

Reads DIR/manifest.json for the file layout and writes, with `prepare_ln`:
  DIR/prepared/ln_train/         image LN, train split
  DIR/prepared/ln_val/           image LN, held-out split
  DIR/prepared/vidln/            video LN (keyframes under the manifest's vidln_frames)
  DIR/prepared/ln_train_captions.json   the train narratives' full captions, COCO-captions
                                 format, images relative to DIR/images: global pairs
Visual Genome needs no preparation: `vg_region` reads DIR/vg/*.json directly.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lavis_regionvlm.preparation.prepare_ln import prepare_ln
from lavis_regionvlm.preparation.skips import format_counts

PREPARED = "prepared"


def prepare_synthetic(root: str | Path, workers: int = 1) -> dict[str, dict[str, Any]]:
    """Prepare the LN files of the synthetic dataset at `root`; returns each folder's meta."""
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    files, templates = manifest["files"], manifest["image_templates"]
    out = root / PREPARED
    metas = {}
    for name in ("ln_train", "ln_val"):
        captions = out / "ln_train_captions.json" if name == "ln_train" else None
        metas[name] = prepare_ln([root / files[name]], root / files["images"], out / name,
                                 image_template=templates["images"], captions_out=captions, workers=workers)
    # The quick start trains our variant (projects/regionvlm/train_tiny.yaml): video narratives
    # split into phrases.
    metas["vidln"] = prepare_ln([root / files["vidln"]], root / files["vidln_frames"], out / "vidln",
                                image_template=templates["vidln_frames"], workers=workers, video_mode="phrases")
    return metas


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: prepare and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder written by python -m lavis_regionvlm.preparation.synthetic")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    for name, meta in prepare_synthetic(args.root, args.workers).items():
        print(f"{name}: {meta['num_samples']} samples from {meta['num_narratives']} narratives; "
              f"skipped: {format_counts(meta['skip_counts'])}")


if __name__ == "__main__":
    main()
