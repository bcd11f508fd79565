"""One seeding scheme (`lavis_regionvlm.common.seeding.seeded_rng`) for datasets, RIS points,
VCR object points and the synthetic generator, drawing exactly the streams each of them drew
with its own formula before (written out here by hand)."""
import zlib

import numpy as np
import pytest

from lavis_regionvlm.common.seeding import seed_key, seeded_rng


def draws(rng: np.random.Generator) -> list:
    return [*rng.integers(0, 2**31, size=6).tolist(), *rng.random(3).tolist()]


@pytest.mark.parametrize("seed,name,keys", [(0, "localized_narratives", (0, 5)), (42, "vg_region", (3,)),
                                            (7, "region_global_mix", (2, 11)), (1, "mix", (0, 0, 1))])
def test_dataset_streams_are_the_old_crc32_of_the_name(seed, name, keys):
    old = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8")), *keys])
    assert draws(seeded_rng(seed, name, *keys)) == draws(old)


def old_image_key(image_id):
    if isinstance(image_id, (int, np.integer)) and image_id >= 0:
        return int(image_id)
    return zlib.crc32(str(image_id).encode("utf-8"))


@pytest.mark.parametrize("seed,image_id,proposal_id", [(0, 581857, 0), (3, 7, 5), (0, "COCO_1", 2),
                                                       (1, np.int64(12), 4), (2, -5, 1), (0, "581857", 3)])
def test_ris_streams_are_the_old_image_key_formula(seed, image_id, proposal_id):
    old = np.random.default_rng([seed, old_image_key(image_id), int(proposal_id)])
    assert draws(seeded_rng(seed, image_id, int(proposal_id))) == draws(old)


@pytest.mark.parametrize("seed,annot_id,object_id", [(0, "val-0", 0), (0, "train-17", 3), (5, "val-9", 12)])
def test_vcr_object_streams_are_the_old_crc32_of_the_annotation_id(seed, annot_id, object_id):
    from lavis_regionvlm.regions import PointTextSpec, Region
    from lavis_regionvlm.vcr.data import region_texts

    region = Region.from_box([0.1, 0.2, 0.6, 0.7])
    old = np.random.default_rng([int(seed), zlib.crc32(str(annot_id).encode()), int(object_id)])
    spec = PointTextSpec(num_points=10, quantize="floor")
    assert region_texts({object_id: region}, annot_id, spec, seed)[object_id] == region.to_text(10, old)


def test_int_keys_stay_and_other_keys_become_the_crc32_of_their_text():
    assert seed_key(5) == 5 and seed_key(np.int32(5)) == 5
    assert seed_key("5") == zlib.crc32(b"5") != 5  # a string id is never confused with an int id
    assert seed_key(-5) == zlib.crc32(b"-5")
    assert draws(seeded_rng(3, 1, 2)) == draws(np.random.default_rng([3, 1, 2]))  # synthetic generator
    for bad in (-1, 1.5, "0", None):
        with pytest.raises(ValueError, match="non-negative integer"):
            seeded_rng(bad, "x")
