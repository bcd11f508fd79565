"""Visual Genome v1.2 region descriptions and image data.

region_descriptions.json: [{"regions": [{"region_id", "width", "height", "image_id", "phrase",
"y", "x"}], "id": image_id}], boxes in pixels; one region per shape, phrase "red circle".
image_data.json: [{"width", "url", "height", "image_id", "coco_id", "flickr_id"}]; the folder
in `url` (VG_100K) names the image folder: {vg_root}/VG_100K/{image_id}.jpg.
"""

from __future__ import annotations

from .scene import Scene

IMAGE_FOLDER = "VG_100K"
_URL = "https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg"


def region_descriptions(scenes: list[Scene]) -> list[dict]:
    """One VG image entry per scene, one region (globally unique region_id) per shape."""
    entries, region_id = [], 1
    for scene in scenes:
        regions = []
        for shape in scene.shapes:
            x, y, w, h = shape.box
            regions.append({"region_id": region_id, "width": w, "height": h,
                            "image_id": scene.image_id, "phrase": f"{shape.colour} {shape.kind}",
                            "y": y, "x": x})
            region_id += 1
        entries.append({"regions": regions, "id": scene.image_id})
    return entries


def image_data(scenes: list[Scene]) -> list[dict]:
    """VG image_data entries; coco_id repeats image_id (the same image in COCO-style formats)."""
    return [{"width": s.size, "url": _URL.format(folder=IMAGE_FOLDER, image_id=s.image_id),
             "height": s.size, "image_id": s.image_id, "coco_id": s.image_id, "flickr_id": None}
            for s in scenes]
