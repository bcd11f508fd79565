"""REFER's `refs(*).p` is read with an unpickler that admits only plain data."""
import json
import os
import pickle
from pathlib import Path

import pytest

from lavis_regionvlm.ris.refer import RefsFileError, load_refs

REAL_REF = Path(__file__).parent / "data" / "refer_refcoco_unc_ref0.json"  # sources: data/SOURCES.md
REF0 = {  # the first ref of RefCOCO's refs(unc).p (tests/data), trimmed to what is read
    "sent_ids": [0, 1, 2], "file_name": "COCO_train2014_000000581857_16.jpg", "ann_id": 1719310,
    "ref_id": 0, "image_id": 581857, "split": "train", "category_id": 1,
    "sentences": [{"tokens": ["lady", "with", "back", "to", "us"], "raw": "lady w back to us",
                   "sent_id": 1, "sent": "lady with back to us"}],
}


class MakesAFolder:
    """Unpickling this calls os.mkdir(path): harmless, but it shows that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_crafted_refs_file_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code_ran"
    refs = [dict(REF0), MakesAFolder(marker)]
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    with pytest.raises(RefsFileError, match=r"refs\(unc\)\.p was not loaded: it refers to posix\.mkdir.*only dicts"):
        load_refs(tmp_path, "unc")
    assert not marker.exists()


def test_real_refs_in_python2_and_python3_pickles_load(tmp_path):
    ref = json.loads(REAL_REF.read_text())
    (tmp_path / "refs(unc).p").write_bytes(pickle.dumps([ref, {**ref, "ref_id": 1}], protocol=2))
    assert load_refs(tmp_path, "unc") == [ref, {**ref, "ref_id": 1}]
    # Python 2's pickle of [{'raw': 'caf\xe9'}] (a byte str, SHORT_BINSTRING): read as latin-1
    (tmp_path / "refs(umd).p").write_bytes(b"\x80\x02]q\x00}q\x01U\x03rawq\x02U\x04caf\xe9q\x03sa.")
    assert load_refs(tmp_path, "umd") == [{"raw": "caf\xe9"}]


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable pickle"),
    (pickle.dumps([REF0], protocol=2)[:40], "not a readable pickle"),
    (pickle.dumps({"refs": []}, protocol=2), "holds a dict, not a list of ref dicts"),
])
def test_an_unreadable_refs_file_is_an_error_naming_it(tmp_path, content, message):
    (tmp_path / "refs(unc).p").write_bytes(content)
    with pytest.raises(RefsFileError, match=message) as error:
        load_refs(tmp_path, "unc")
    assert str(tmp_path / "refs(unc).p") in str(error.value)
