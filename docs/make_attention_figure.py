"""Make `docs/attention_overlay.png`: where a trained tiny RegionVLM looks for two regions.

Three panels side by side: a held-out synthetic image, then for two regions (two different
objects) the Q-Former's cross-attention heat map (`RegionPredictor.attention_map`) blended on
the image, with the region's points (the K points the model read) drawn as white dots. Each
map is captioned with the model's caption for that region (and the reference phrase).

    python -m lavis_regionvlm.preparation.synthetic --out data/synthetic
    python -m lavis_regionvlm.preparation.prepare_synthetic --root data/synthetic
    (train: see projects/regionvlm/train_tiny.yaml)
    python docs/make_attention_figure.py --checkpoint output/regionvlm_tiny/train/checkpoint_9.pth

The image is the first one of the validation split (or --image-name) with two phrases whose
regions lie at least --min-distance apart (centre to centre, relative units).
"""
from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
PANEL = 256  # px: the 64 px images are upscaled (nearest) to this
TEXT_HEIGHT = 56


def pick_samples(prepared: Path, image_name: str | None, min_distance: float):
    """(image name, [two (phrase, (K, 2) points) of different objects]) from a prepared LN split."""
    from lavis_regionvlm.preparation.ln_prepared import PreparedNarratives

    by_image: dict[str, list] = {}
    for sample in PreparedNarratives(prepared):
        by_image.setdefault(sample.image, []).append((sample.text, sample.points))
    names = [image_name] if image_name else list(by_image)
    for name in names:
        samples = by_image.get(name, [])
        for i, (text_a, points_a) in enumerate(samples):
            for text_b, points_b in samples[i + 1:]:
                far = np.linalg.norm(points_a.mean(axis=0) - points_b.mean(axis=0)) >= min_distance
                if far and text_a.lower() != text_b.lower():
                    return name, [(text_a, points_a), (text_b, points_b)]
    raise SystemExit(f"no image in {prepared} with two regions {min_distance} apart"
                     + (f" (looked at {image_name})" if image_name else ""))


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def panel(picture: Image.Image, lines: list[tuple[str, tuple[int, int, int]]]) -> Image.Image:
    """A PANEL x PANEL picture with up to a few lines of text under it."""
    out = Image.new("RGB", (PANEL, PANEL + TEXT_HEIGHT), "white")
    out.paste(picture.resize((PANEL, PANEL), Image.NEAREST), (0, 0))
    draw = ImageDraw.Draw(out)
    y = PANEL + 4
    for text, colour in lines:
        for line in textwrap.wrap(text, width=38)[:2]:
            draw.text((6, y), line, fill=colour, font=font(12))
            y += 14
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="trained tiny checkpoint (.pth)")
    parser.add_argument("--data", default=str(REPO / "data/synthetic"), help="synthetic data root")
    parser.add_argument("--image-name", help="an image of the validation split (default: the first that fits)")
    parser.add_argument("--min-distance", type=float, default=0.35)
    parser.add_argument("--layers", default="all", help="all | first | last | indices '0,1'")
    parser.add_argument("--out", default=str(REPO / "docs/attention_overlay.png"))
    args = parser.parse_args(argv)

    from lavis_regionvlm.interactive.attention import parse_layers
    from lavis_regionvlm.interactive.predictor import RegionPredictor
    from lavis_regionvlm.regions import Region

    data = Path(args.data)
    name, samples = pick_samples(data / "prepared/ln_val", args.image_name, args.min_distance)
    predictor = RegionPredictor.from_pretrained("tiny", checkpoint=args.checkpoint)
    image = Image.open(data / "images" / name).convert("RGB")
    predictor.set_image(image)

    regions = [Region.from_points(points) for _, points in samples]
    captions = predictor.caption(regions)
    maps = predictor.attention_map(regions, layers=parse_layers(args.layers))
    big = image.resize((PANEL, PANEL), Image.NEAREST)  # overlay at display size: smooth heat, sharp pixels
    panels = [panel(big, [(f"image {name}", (0, 0, 0)), (f"attention: Q-Former layers {list(maps[0].layers)}",
                                                          (90, 90, 90))])]
    for (phrase, points), caption, attention_map in zip(samples, captions, maps):
        picture = attention_map.overlay(big, alpha=0.6, points=True, point_radius=4)
        panels.append(panel(picture, [(f"model: {caption}", (0, 0, 0)), (f"reference: {phrase}", (90, 90, 90))]))
        (cx, cy), (px, py) = points.mean(axis=0), attention_map.peak_xy
        print(f"{phrase!r}: caption {caption!r}, region centre ({cx:.2f}, {cy:.2f}), "
              f"attention peak ({px:.2f}, {py:.2f})")

    gap = 8
    figure = Image.new("RGB", (len(panels) * PANEL + (len(panels) - 1) * gap, PANEL + TEXT_HEIGHT), "white")
    for i, picture in enumerate(panels):
        figure.paste(picture, (i * (PANEL + gap), 0))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(out, format="PNG", optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
