"""What the quick start measures on the held-out synthetic regions.

- `caption_scores`: how often a generated caption gets the region's whole phrase, its colour,
  its shape and its position words right (`agreement`), from an evaluation's result file;
- `chance_scores`: the same for a captioner that names one of the image's phrases at random;
- `phrase_ranking`: how often the model gives the region's own phrase the lowest loss among
  the image's phrases (every phrase names a different object), and the chance of that.

Colours are unique within a synthetic image, so the colour word alone tells which object a
caption names.
"""
from __future__ import annotations

import json
from collections import defaultdict
from itertools import takewhile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lavis_regionvlm.preparation.ln_prepared import PreparedNarratives
from lavis_regionvlm.projects import projects_dir
from lavis_regionvlm.tasks.region_captioning import normalize_caption

PROJECT = projects_dir()
ATTRIBUTES = ("exact match", "colour", "shape", "position")


def phrase_parts(text: str) -> tuple[str, ...]:
    """(whole phrase, colour, shape, position words) of a synthetic region phrase, "a red
    circle at the top left"; of a longer caption, its first phrase ("" where missing)."""
    words = normalize_caption(text).split()
    position = " ".join(takewhile(lambda w: w not in ("a", "and"), words[3:]))
    return (" ".join(words), *(words[i] if len(words) > i else "" for i in (1, 2)), position)


def agreement(caption: str, target: str) -> list[bool]:
    """Per entry of ATTRIBUTES: does the caption get it right?"""
    caption_parts, target_parts = phrase_parts(caption), phrase_parts(target)
    return [caption_parts[0] == target_parts[0]] + [
        c == t for c, t in zip(caption_parts[1:], target_parts[1:])
    ]


def chance_scores(prepared_dir: Path) -> list[float]:
    """% right per entry of ATTRIBUTES for a captioner that names one of the image's
    phrases at random, over the held-out region samples."""
    phrases, samples = defaultdict(set), []
    for sample in PreparedNarratives(prepared_dir):
        phrases[sample.image].add(normalize_caption(sample.text))
        samples.append((sample.image, sample.text))
    totals = [0.0] * len(ATTRIBUTES)
    for image, target in samples:
        for phrase in phrases[image]:
            for k, right in enumerate(agreement(phrase, target)):
                totals[k] += right / len(phrases[image])
    return [100.0 * total / len(samples) for total in totals]


def caption_scores(eval_dir: Path) -> tuple[list[float], dict]:
    """(% right per entry of ATTRIBUTES, the metrics line of evaluate.txt) of an evaluation."""
    with open(eval_dir / "evaluate.txt") as f:
        metrics = json.loads(f.read().splitlines()[-1])
    with open(eval_dir / "result" / f"val_epoch{metrics['epoch']}.json") as f:
        records = json.load(f)
    totals = [0] * len(ATTRIBUTES)
    for record in records:
        for k, right in enumerate(agreement(record["caption"], record["target"])):
            totals[k] += right
    return [100.0 * total / len(records) for total in totals], metrics["val"]


def trained_tiny_model(checkpoint: str | Path, project: str | Path | None = None):
    """The `tiny` model as a training YAML builds it (default `train_tiny.yaml`; its
    `model.arch` says which model, e.g. `train_tiny_opt.yaml`: `blip2_opt_region`), in eval
    mode, with the trained weights of a runner checkpoint."""
    from lavis.common.registry import registry

    import lavis_regionvlm.models  # noqa: F401  (registers the models)

    trained = OmegaConf.load(Path(project) if project else PROJECT / "train_tiny.yaml").model
    model_cls = registry.get_model_class(trained.arch)
    base = OmegaConf.load(model_cls.default_config_path("tiny")).model
    model = model_cls.from_config(OmegaConf.merge(base, trained))
    model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])
    return model.eval()


@torch.inference_mode()
def phrase_ranking(model, prepared_dir: str | Path, images_dir: str | Path,
                   max_images: int | None = None) -> tuple[float, float]:
    """(% of held-out regions whose own phrase gets the lowest LM loss among the phrases of
    its image, % a random pick gets), over the regions of images with 2 or more phrases.

    Each region is written as `model.num_points` points (seed 0, the model's rounding) drawn
    from its prepared points; `max_images` caps how many images are scored.
    """
    from lavis.processors.blip_processors import BlipImageEvalProcessor
    from PIL import Image

    from lavis_regionvlm.regions import Region

    processor = BlipImageEvalProcessor(image_size=model.img_size)
    by_image = defaultdict(list)
    for sample in PreparedNarratives(prepared_dir):
        by_image[sample.image].append((normalize_caption(sample.text), sample.points))
    hits = chance = total = 0
    for image_name, samples in list(by_image.items())[:max_images]:
        phrases = sorted({text for text, _ in samples})
        if len(phrases) < 2:
            continue
        image = processor(Image.open(Path(images_dir) / image_name).convert("RGB"))
        embeds = model.encode_image(image[None])
        for text, points in samples:
            region_text = Region.from_points(points).to_text(
                model.num_points, seed=0, quantize=model.point_quantize)
            losses = model.score_regions(embeds, [region_text] * len(phrases), phrases,
                                         image_index=torch.zeros(len(phrases), dtype=torch.long))
            hits += phrases[int(losses.argmin())] == text
            chance += 1 / len(phrases)
            total += 1
    if total == 0:
        raise ValueError(f"{prepared_dir} holds no image with two or more region phrases to rank")
    return 100.0 * hits / total, 100.0 * chance / total
