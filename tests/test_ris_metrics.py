"""RIS metrics against masks with known overlaps, and merging per-rank results."""
import numpy as np
import pytest

from lavis_regionvlm.ris.metrics import intersection_union, iou, summarize
from lavis_regionvlm.ris.results import merge_rank_results


def box_mask(x1, y1, x2, y2, size=(20, 20)):
    mask = np.zeros(size, bool)
    mask[y1:y2, x1:x2] = True
    return mask


def test_intersection_union_of_known_boxes():
    a = box_mask(0, 0, 10, 10)  # 100 px
    b = box_mask(5, 0, 15, 10)  # 100 px, 50 shared
    assert intersection_union(a, b) == (50, 150)
    assert intersection_union(a, a) == (100, 100)
    assert intersection_union(a, box_mask(10, 10, 20, 20)) == (0, 200)
    assert intersection_union(None, a) == (0, 100)  # no prediction: union is the target
    assert iou(50, 150) == pytest.approx(1 / 3)
    assert iou(0, 0) == 0.0


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in size"):
        intersection_union(np.ones((4, 4), bool), np.ones((4, 5), bool))


def test_miou_oiou_and_precision_from_known_overlaps():
    target = box_mask(0, 0, 10, 10)
    cases = [
        box_mask(0, 0, 10, 10),  # IoU 1
        box_mask(5, 0, 15, 10),  # IoU 50/150
        box_mask(0, 0, 10, 6),   # IoU 60/100
        box_mask(10, 10, 20, 20),  # IoU 0
    ]
    records = []
    for pred in cases:
        inter, union = intersection_union(pred, target)
        records.append({"intersection": inter, "union": union})
    metrics = summarize(records)
    ious = [1.0, 1 / 3, 0.6, 0.0]
    assert metrics["mIoU"] == pytest.approx(100 * np.mean(ious))
    assert metrics["oIoU"] == pytest.approx(100 * (100 + 50 + 60 + 0) / (100 + 150 + 100 + 200))
    assert metrics["prec@0.5"] == pytest.approx(50.0)  # 1.0 and 0.6
    assert metrics["prec@0.6"] == pytest.approx(50.0)  # IoU >= threshold counts
    assert metrics["prec@0.7"] == pytest.approx(25.0)
    assert metrics["prec@0.9"] == pytest.approx(25.0)
    assert metrics["count"] == 4


def test_oiou_weighs_large_objects_and_miou_does_not():
    small_hit = {"intersection": 10, "union": 10}
    large_miss = {"intersection": 0, "union": 1000}
    metrics = summarize([small_hit, large_miss])
    assert metrics["mIoU"] == pytest.approx(50.0)
    assert metrics["oIoU"] == pytest.approx(100 * 10 / 1010)


def test_summarize_needs_records():
    with pytest.raises(ValueError):
        summarize([])


def test_merge_keeps_each_expression_once_in_dataset_order():
    rank0 = [{"id": "1_0", "iou": 0.5}, {"id": "2_1", "iou": 0.1}, {"id": "1_0", "iou": 0.5}]
    rank1 = [{"id": "3_2", "iou": 0.7}, {"id": "1_0", "iou": 0.5}]  # padded repeat of image 1
    merged = merge_rank_results([rank0, rank1], ["1_0", "2_1", "3_2"])
    assert [r["id"] for r in merged] == ["1_0", "2_1", "3_2"]


def test_merge_reports_lost_and_unknown_expressions():
    with pytest.raises(RuntimeError, match="1 expressions missing"):
        merge_rank_results([[{"id": "a"}]], ["a", "b"])
    with pytest.raises(RuntimeError, match="1 unknown"):
        merge_rank_results([[{"id": "a"}, {"id": "z"}]], ["a"])
