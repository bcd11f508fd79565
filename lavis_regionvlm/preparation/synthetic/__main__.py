"""CLI: python -m lavis_regionvlm.preparation.synthetic --out DIR [--num-images N] [--seed S] [--image-size P]."""

from __future__ import annotations

import argparse
import json
import time

from .generate import generate_synthetic_dataset


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, generate the dataset, print its counts and the time taken."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--num-images", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64, help="side of the square images, pixels")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="held-out share of the images")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    manifest = generate_synthetic_dataset(args.out, num_images=args.num_images, image_size=args.image_size,
                                          seed=args.seed, val_fraction=args.val_fraction)
    print(json.dumps(manifest["counts"], indent=1))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
