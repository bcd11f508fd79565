"""Proposal files never give silently wrong results: keyed by the full image file name,
recording their image, checked on read; every corrupted or foreign file is an error naming it."""
import json
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from lavis_regionvlm.regions.masks import mask_to_rle
from lavis_regionvlm.ris.dataset import RefCocoRisDataset
from lavis_regionvlm.ris.proposal_cache import (
    ProposalFileError,
    image_fingerprint,
    proposal_path,
    read_proposals,
    write_json_atomic,
)
from lavis_regionvlm.ris.proposals import main as proposals_main
from lavis_regionvlm.ris.refer import Expression, ReferImage

H, W = 24, 32
GENERATOR = {"points_per_side": 3, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def save_image(path, seed, size=(H, W)):
    pixels = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def box_rle(height=H, width=W, top=4, left=4, bottom=12, right=20):
    mask = np.zeros((height, width), bool)
    mask[top:bottom, left:right] = True
    return mask_to_rle(mask)


def refer_image(file_name, image_id=500, height=H, width=W):
    expression = Expression("1_1", 1, 1, 7, "the box")
    return ReferImage(image_id, file_name, height, width, (expression,), {7: box_rle(height, width)})


def dataset(images, image_root, proposals_dir):
    return RefCocoRisDataset(images, image_root, proposals_dir, vis_processor=lambda image: np.asarray(image))


def test_cat_jpg_and_cat_png_get_their_own_files_and_their_own_proposals(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    save_image(images / "cat.jpg", seed=0)
    save_image(images / "cat.png", seed=1)
    config = tmp_path / "proposals.yaml"
    OmegaConf.save(OmegaConf.create({
        "sam": {"model_type": "tiny", "checkpoint": None, "device": "cpu"}, "generator": GENERATOR,
        "images": {"root": str(images)}, "output_dir": str(tmp_path / "proposals"),
    }), config)
    assert proposals_main(["--config", str(config)]) == {"done": 2, "skipped": 0}
    files = sorted(p.name for p in (tmp_path / "proposals").glob("cat*.json"))
    assert files == ["cat.jpg.json", "cat.png.json"]
    for name in ("cat.jpg", "cat.png"):
        payload = json.loads((tmp_path / "proposals" / f"{name}.json").read_text())
        assert payload["file_name"] == name and (payload["height"], payload["width"]) == (H, W)
        assert payload["num_proposals"] == len(payload["proposals"])
        assert payload["image_bytes"] == (images / name).stat().st_size
    # each image is scored with its own file, and a swapped file is refused
    data = dataset([refer_image("cat.jpg", 1), refer_image("cat.png", 2)], images, tmp_path / "proposals")
    assert data[0]["proposals"] == json.loads((tmp_path / "proposals/cat.jpg.json").read_text())["proposals"]
    shutil.copy(tmp_path / "proposals/cat.png.json", tmp_path / "proposals/cat.jpg.json")
    with pytest.raises(ProposalFileError, match=r"cat\.jpg\.json: holds the proposals of 'cat\.png'"):
        data[0]


def test_an_older_stem_named_folder_is_refused_by_the_generator(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    save_image(images / "cat.jpg", seed=0)
    output = tmp_path / "proposals"
    output.mkdir()
    (output / "cat.json").write_text(json.dumps({"file_name": "cat.jpg", "proposals": []}))
    config = tmp_path / "proposals.yaml"
    OmegaConf.save(OmegaConf.create({
        "sam": {"model_type": "tiny", "checkpoint": None, "device": "cpu"}, "generator": GENERATOR,
        "images": {"root": str(images)}, "output_dir": str(output),
    }), config)
    with pytest.raises(SystemExit, match=r"named by image stem .*cat\.json"):
        proposals_main(["--config", str(config)])


@pytest.fixture
def one_image(tmp_path):
    """(image root, proposals dir, ReferImage) for one 24x32 image `cat.jpg`, id 500."""
    root = tmp_path / "images"
    root.mkdir()
    save_image(root / "cat.jpg", seed=0)
    (tmp_path / "proposals").mkdir()
    return root, tmp_path / "proposals", refer_image("cat.jpg")


def good_payload(root, **changes):
    payload = {"file_name": "cat.jpg", "image_id": 500, "height": H, "width": W,
               **image_fingerprint(root / "cat.jpg"), "num_proposals": 1,
               "proposals": [{"segmentation": box_rle()}]}
    return {**payload, **changes}


def broken_rle():
    """A small mask whose runs add up to 720 of 768 pixels: below the proposal filter's area
    threshold it would be skipped without ever being decoded."""
    return {"size": [H, W], "counts": [700, 20]}


CORRUPTIONS = {
    "invalid JSON": ('{"proposals": [', r"not valid JSON \(.* line 1 column"),
    "null": ("null", r"expected a list of records .* got null"),
    "a number": ("3", r"expected a list of records .* got 3"),
    "no proposals key": (json.dumps({"file_name": "cat.jpg"}), r"object with keys \['file_name'\]"),
    "empty list, no header": (json.dumps({"proposals": []}), "holds no proposals"),
    "empty list, header says 1": (lambda root: good_payload(root, proposals=[]), "says 1 proposals but holds 0"),
    "record without segmentation": (json.dumps([{"area": 3}]), "proposal 0 has no COCO RLE"),
    "RLE runs short of h*w": (lambda root: good_payload(root, proposals=[{"segmentation": broken_rle()}]),
                              rf"proposal 0's RLE run lengths add up to \d+, but its size {H}x{W} needs {H * W}"),
    "bad RLE characters": (
        lambda root: good_payload(root, proposals=[{"segmentation": {"size": [H, W], "counts": "\x01"}}]),
        "invalid character"),
    "mixed sizes": (lambda root: good_payload(root, num_proposals=2, proposals=[
        {"segmentation": box_rle()}, {"segmentation": box_rle(W, H)}]),
        rf"proposals of two sizes: .* proposal 1 is {W}x{H}"),
    "another image's file of the same size": (lambda root: good_payload(root, file_name="dog.jpg"),
                                              "holds the proposals of 'dog.jpg', not of 'cat.jpg'"),
    "another image id": (lambda root: good_payload(root, image_id=501), "image id 501, not of 500"),
    "the image file changed": (lambda root: good_payload(root, image_sha1_64k="0" * 40),
                               "was made from another cat.jpg .* the image file changed"),
    "headerless, another size": (json.dumps([{"segmentation": box_rle(W, H)}]),
                                 rf"masks are {W}x{H}, but cat.jpg is {H}x{W}"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_every_corrupted_or_foreign_proposal_file_is_an_error_naming_it(one_image, case):
    root, proposals, image = one_image
    content, message = CORRUPTIONS[case]
    path = proposal_path(proposals, "cat.jpg")
    path.write_text(content if isinstance(content, str) else json.dumps(content(root)))
    with pytest.raises(ProposalFileError, match=message) as error:
        dataset([image], root, proposals)[0]
    assert str(path) in str(error.value) and "python -m lavis_regionvlm.ris.proposals" in str(error.value)


def test_a_good_file_and_sam_finding_nothing_are_accepted(one_image):
    root, proposals, image = one_image
    path = proposal_path(proposals, "cat.jpg")
    write_json_atomic(path, good_payload(root))
    assert dataset([image], root, proposals)[0]["proposals"] == [{"segmentation": box_rle()}]
    write_json_atomic(path, good_payload(root, num_proposals=0, proposals=[]))
    assert dataset([image], root, proposals)[0]["proposals"] == []


def test_proposals_are_found_by_file_name_stem_or_image_id_but_never_two(one_image):
    root, proposals, image = one_image
    records = [{"segmentation": box_rle()}]
    by_id = proposals / "500.json"  # as other SAM pipelines name them
    by_id.write_text(json.dumps(records))
    assert dataset([image], root, proposals)[0]["proposals"] == records
    by_stem = proposals / "cat.json"
    by_stem.write_text(json.dumps(records))
    both = r"two proposal files could be image 500 \(cat\.jpg\)'s: .*cat\.json and .*500\.json"
    with pytest.raises(ProposalFileError, match=both):
        dataset([image], root, proposals)[0]
    by_id.unlink()
    assert dataset([image], root, proposals)[0]["proposals"] == records
    by_stem.unlink()
    none = r"no proposals for image 500 \(cat\.jpg\).*cat\.jpg\.json, cat\.json, 500\.json"
    with pytest.raises(FileNotFoundError, match=none):
        dataset([image], root, proposals)[0]


def test_a_stem_named_file_is_refused_when_two_images_share_the_stem(one_image):
    root, proposals, image = one_image
    save_image(root / "cat.png", seed=1)
    (proposals / "cat.json").write_text(json.dumps([{"segmentation": box_rle()}]))
    data = dataset([image, refer_image("cat.png", 501)], root, proposals)
    for index in (0, 1):
        with pytest.raises(ProposalFileError, match=r"cat\.json is named after the stem that cat\.(jpg|png) shares"):
            data[index]


def test_a_file_read_alone_is_checked_too(tmp_path):
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([{"segmentation": box_rle()}, {"segmentation": box_rle(W, H)}]))
    with pytest.raises(ProposalFileError, match="two sizes"):
        read_proposals(path)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_the_ris_task_ends_with_the_files_message_alone(one_image, num_workers):
    from torch.utils.data import DataLoader

    from lavis_regionvlm.tasks.zero_shot_ris import ZeroShotRISTask

    root, proposals, image = one_image
    proposal_path(proposals, "cat.jpg").write_text("null")
    data = dataset([image], root, proposals)
    loader = DataLoader(data, batch_size=1, num_workers=num_workers, collate_fn=data.collater)
    with pytest.raises(SystemExit) as exit_:
        ZeroShotRISTask.setup_task().evaluation(None, loader)
    message = str(exit_.value.code)
    assert message.startswith(f"zero_shot_ris: {proposal_path(proposals, 'cat.jpg')}: expected a list")
    assert "Traceback" not in message and "\n" not in message
