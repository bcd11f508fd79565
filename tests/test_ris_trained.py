"""A `tiny` model trained briefly on synthetic region captions picks the true mask in
`zero_shot_ris` far more often than chance.

Training: region = a shape's mask (K points sampled per step), target = one of its referring
expressions; each batch holds every shape of 8 images, so only the points tell the targets
of one image apart. The model starts from `geometric_init` with its ViT position code scaled
up to the patch embeddings' own size: at geometric_init's 0.02 the patches' positions are
about 30x weaker than their colours, and grounding took several thousand steps instead of a
few hundred. Evaluation: the task over held-out images whose proposals are the annotated
shapes (the true mask is among them) plus a whole-image mask that the filter drops.
"""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.regions import Region, points_to_text
from lavis_regionvlm.regions.masks import mask_to_rle, polygons_to_mask
from lavis_regionvlm.ris.proposal_cache import proposal_path, write_json_atomic
from lavis_regionvlm.ris.refer import load_split, segmentation_mask

STEPS = 1000
IMAGES_PER_STEP = 8
SPLIT = "val"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def training_groups(refcoco, vis, txt):
    """Per train image: [(image (3, S, S), shape mask, [its expressions]), ...]."""
    groups = []
    for image in load_split(refcoco, "unc", "train"):
        with Image.open(refcoco / "images/train2014" / image.file_name) as pil:
            pixels = vis(pil.convert("RGB"))
        expressions = {}
        for e in image.expressions:
            expressions.setdefault(e.ann_id, []).append(txt(e.text))
        groups.append([
            (pixels, segmentation_mask(image.segmentations[ann], image.height, image.width), texts)
            for ann, texts in expressions.items()
        ])
    return groups


@torch.no_grad()
def scale_position_code(model, images: torch.Tensor) -> None:
    """Give the ViT's patch position code the spread of its patch embeddings on `images`."""
    vit = model.visual_encoder
    content = vit.patch_embed(images).std()
    vit.pos_embed[0, 1:] *= content / vit.pos_embed[0, 1:].std()


def train(model, groups, num_points: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for _ in range(STEPS):
        chosen = rng.choice(len(groups), IMAGES_PER_STEP, replace=False)
        batch = [(pixels, mask, texts[rng.integers(len(texts))]) for i in chosen for pixels, mask, texts in groups[i]]
        region_text = [points_to_text(Region.from_mask(m).sample_points(num_points, rng), "floor") for _, m, _ in batch]
        loss = model({
            "image": torch.stack([b[0] for b in batch]), "region_text": region_text,
            "text_input": [""] * len(batch), "text_output": [b[2] for b in batch],
        })["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
def test_trained_tiny_model_picks_the_true_mask_far_more_often_than_chance(tmp_path, tiny_config):
    from lavis.common.registry import registry
    from lavis.processors.blip_processors import BlipCaptionProcessor, BlipImageEvalProcessor

    from lavis_regionvlm.preparation.synthetic import generate_synthetic_dataset
    from lavis_regionvlm.models import Blip2T5Region

    generate_synthetic_dataset(tmp_path / "synthetic", num_images=600, val_fraction=0.1)
    refcoco = tmp_path / "synthetic/refcoco"
    vis, txt = BlipImageEvalProcessor(image_size=64), BlipCaptionProcessor()
    torch.manual_seed(0)
    model = Blip2T5Region.from_config(OmegaConf.merge(
        tiny_config.model, {"freeze_t5": False, "freeze_vit": True, "geometric_init": True}))
    groups = training_groups(refcoco, vis, txt)
    scale_position_code(model, torch.stack([g[0][0] for g in groups[:64]]))
    losses = train(model, groups, model.num_points)
    assert np.mean(losses[-50:]) < np.mean(losses[:50]) / 2
    model.eval()

    instances = json.loads((refcoco / "instances.json").read_text())
    held_out = load_split(refcoco, "unc", SPLIT)
    shapes_per_image = {}
    for image in held_out:
        masks = [polygons_to_mask(a["segmentation"], image.height, image.width)
                 for a in instances["annotations"] if a["image_id"] == image.image_id]
        shapes_per_image[image.image_id] = len(masks)
        records = [{"segmentation": mask_to_rle(m)} for m in [np.ones((image.height, image.width), bool), *masks]]
        write_json_atomic(proposal_path(tmp_path / "proposals", image.file_name), {"proposals": records})
    dataset_cfg = OmegaConf.create({
        "data_type": "images",
        "build_info": {"ann_dir": str(refcoco), "split_by": "unc", "splits": [SPLIT],
                       "images": str(refcoco / "images/train2014"), "proposals": str(tmp_path / "proposals")},
        "vis_processor": {"eval": {"name": "blip_image_eval", "image_size": 64}},
        "text_processor": {"eval": {"name": "blip_caption"}},
    })
    dataset = registry.get_builder_class("refcoco_ris")(dataset_cfg).build_datasets()[SPLIT]
    task = registry.get_task_class("zero_shot_ris").setup_task(
        cfg=SimpleNamespace(run_cfg=OmegaConf.create({"min_area_frac": 0.01})))
    task.before_evaluation(model, dataset)
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=dataset.collater)
    metrics = task.after_evaluation(task.evaluation(model, loader), SPLIT, 0, result_dir=str(tmp_path))
    records = json.loads((tmp_path / f"{SPLIT}_epoch0.json").read_text())

    assert all(r["proposal"] != 0 for r in records), "the whole-image proposal is filtered out"
    picked = np.mean([r["iou"] == 1.0 for r in records])  # shapes are disjoint: IoU 1 or 0
    chance = np.mean([1 / shapes_per_image[r["image_id"]] for r in records])
    print(f"true mask picked for {picked:.1%} of {len(records)} expressions; chance {chance:.1%}; "
          f"mIoU {metrics['mIoU']:.1f}")
    assert metrics["prec@0.5"] == pytest.approx(100 * picked)
    assert picked >= chance + 0.25
