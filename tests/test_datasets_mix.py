"""`region_global_mix`: LN + VG region data and global pairs (COCO-captions JSON and webdataset
shards) through LAVIS's concat/collate path, DistributedSampler on two ranks: every batch holds
the configured ratio; a batch trains the tiny model."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from lavis.common.config import Config
from lavis.common.registry import registry
from lavis.datasets.data_utils import concat_datasets, reorg_datasets_by_split
from lavis.datasets.datasets.base_dataset import ConcatDataset
from lavis.datasets.datasets.dataloader_utils import IterLoader
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from lavis_regionvlm.preparation.prepare_synthetic import prepare_synthetic
from lavis_regionvlm.preparation.synthetic import generate_synthetic_dataset
from lavis_regionvlm.datasets import RegionGlobalMixDataset, set_epoch

REGION, GLOBAL, BATCH_GROUPS = 3, 2, 2


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def caption(text: str) -> bytes:
    return json.dumps({"caption": text, "url": "http://example.com/x.jpg"}).encode()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mix")
    generate_synthetic_dataset(root, num_images=30, seed=1)
    prepare_synthetic(root)
    shards = root / "laion"
    shards.mkdir()
    write_shard(shards / "00000.tar", [("000000.jpg", jpeg((250, 0, 0))), ("000000.json", caption("a red photo")),
                                       ("000001.jpg", jpeg((0, 250, 0))), ("000001.cls", b"3"),  # incomplete: no caption
                                       ("000002.jpg", jpeg((0, 0, 250))), ("000002.json", b'{"url": "x"}')])  # no caption
    write_shard(shards / "00001.tar", [("000003.jpg", jpeg((250, 250, 0))), ("000003.json", caption("a yellow photo")),
                                       ("000004.png", jpeg((0, 250, 250))), ("000004.json", caption("a cyan photo"))])
    return root


def mix_config(root: Path) -> dict:
    """The training-YAML `datasets:` block of the quick start, for the synthetic set at `root`."""
    return {"region_global_mix": {
        "region_ratio": None,  # groups: our variant; tests/test_datasets_released.py mixes by ratio
        "group": {"region": REGION, "global": GLOBAL},
        "sampling": {"num_points": 10, "point_quantize": "floor", "seed": 0, "epoch_unit": "phrase",
                     "stored_points": None},
        "vis_processor": {"train": {"name": "region_image_train", "image_size": 64, "crop_prob": 0.0}},
        "region_sources": {
            "localized_narratives": {"build_info": {"annotations": {"train": {"files": [
                {"path": str(root / "prepared/ln_train")}, {"path": str(root / "prepared/vidln")}]}}}},
            "vg_region": {"build_info": {"annotations": {"train": {
                "region_descriptions": str(root / "vg/region_descriptions.json"),
                "image_data": str(root / "vg/image_data.json"), "images": str(root / "vg")}}}},
        },
        "global_sources": {"global_caption": {"build_info": {"annotations": {"train": {"files": [
            {"path": str(root / "prepared/ln_train_captions.json"), "images": str(root / "images")},
            {"shards": [str(root / "laion/{00000..00001}.tar")]}]}}}}},
    }}


@pytest.fixture(scope="module")
def train_set(data) -> ConcatDataset:
    """What LAVIS's runner builds: the task builds each dataset, the runner concatenates."""
    cfg = Config.build_dataset_config(OmegaConf.create({"datasets": mix_config(data)}))
    datasets = {name: registry.get_builder_class(name)(cfg.datasets[name]).build_datasets() for name in cfg.datasets}
    train = concat_datasets(reorg_datasets_by_split(datasets))["train"]
    assert isinstance(train, ConcatDataset) and isinstance(train.datasets[0], RegionGlobalMixDataset)
    return train


def rank_loader(train: ConcatDataset, rank: int) -> IterLoader:
    sampler = DistributedSampler(train, num_replicas=2, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(train, batch_size=BATCH_GROUPS, sampler=sampler, collate_fn=train.collater, drop_last=True)
    return IterLoader(loader, use_distributed=True)


def test_sources_and_skips(train_set, data):
    mix = train_set.datasets[0]
    sizes = {name: len(ds) for name, ds in {**mix.region_sources, **mix.global_sources}.items()}
    counts = json.loads((data / "manifest.json").read_text())["counts"]
    assert sizes["localized_narratives"] > counts["ln_train"] and sizes["vg_region"] == counts["vg_regions"]
    assert sizes["global_caption"] == counts["ln_train"] + 4  # a caption per train narrative, 4 shard samples
    assert len(mix) == -(-(sizes["localized_narratives"] + sizes["vg_region"]) // REGION)
    assert mix.skip_counts["global_caption"] == {"incomplete_sample": 1}


def test_every_batch_has_the_ratio_on_both_ranks(train_set):
    mix = train_set.datasets[0]
    region_phrases = {ds.record(i).text.lower() for ds in mix.region_sources.values() for i in range(len(ds))}
    seen_groups = []
    for rank in (0, 1):
        loader = rank_loader(train_set, rank)
        seen_groups.append(set(iter(loader._dataloader.sampler)))
        for _ in range(4):
            batch = next(loader)
            assert set(batch) == {"image", "region_text", "text_input", "text_output"}
            size = BATCH_GROUPS * (REGION + GLOBAL)
            assert batch["image"].shape == (size, 3, 64, 64)
            is_region = [text != "" for text in batch["region_text"]]
            assert sum(is_region) / size == REGION / (REGION + GLOBAL)
            assert is_region == ([True] * REGION + [False] * GLOBAL) * BATCH_GROUPS
            for text, target in zip(batch["region_text"], batch["text_output"]):
                assert (target in region_phrases) == (text != "")
            assert batch["text_input"] == [""] * size
    assert not seen_groups[0] & seen_groups[1]
    assert len(seen_groups[0] | seen_groups[1]) == len(mix)


def test_set_epoch_through_the_loader(train_set):
    mix = train_set.datasets[0]
    loader = rank_loader(train_set, 0)
    before = mix[0]
    assert set_epoch(loader, 1) == 1
    assert mix.epoch == 1 and all(ds.epoch == 1 for ds in mix.region_sources.values())
    after = mix[0]
    assert after["region_text"][:REGION] != before["region_text"][:REGION]
    globals_epoch_1 = mix.group_indices(0)[1]
    assert set_epoch(mix, 0) == 1
    assert mix.group_indices(0)[1] != globals_epoch_1  # the global pool is walked through
    assert mix[0]["region_text"] == before["region_text"]


def test_shard_samples_load_and_bad_caption_is_replaced(train_set):
    source = train_set.datasets[0].global_sources["global_caption"]
    texts = [source[i]["text_output"] for i in range(len(source))]
    assert texts[-4] == "a red photo" and texts[-2:] == ["a yellow photo", "a cyan photo"]
    assert texts[-3] not in ("", "a blue photo")  # no caption in its .json: a substitute
    assert source.skip_counts["bad_caption"] == 1 and source.skip_counts["incomplete_sample"] == 1


def test_a_mixed_batch_trains_the_tiny_model(train_set, tiny_model):
    batch = next(rank_loader(train_set, 1))
    tiny_model.train()
    try:
        loss = tiny_model(batch)["loss"]
        loss.backward()
    finally:
        tiny_model.zero_grad(set_to_none=True)
        tiny_model.eval()
    assert torch.isfinite(loss) and loss.item() > 0


def test_the_sources_also_concatenate_as_plain_lavis_datasets(data):
    """Without the mixture, LAVIS concatenates the three datasets; no key is lost."""
    blocks = mix_config(data)["region_global_mix"]
    user = {name: {**block, "vis_processor": {"train": {"name": "region_image_train", "image_size": 32}}}
            for name, block in {**blocks["region_sources"], **blocks["global_sources"]}.items()}
    cfg = Config.build_dataset_config(OmegaConf.create({"datasets": user}))
    datasets = {name: registry.get_builder_class(name)(cfg.datasets[name]).build_datasets() for name in cfg.datasets}
    train = concat_datasets(reorg_datasets_by_split(datasets))["train"]
    batch = train.collater([train[0], train[len(train) - 1], train[len(train.datasets[0])]])
    assert set(batch) == {"image", "region_text", "text_input", "text_output"}
    assert batch["image"].shape == (3, 3, 32, 32) and batch["region_text"][1] == ""
