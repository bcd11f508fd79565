"""`captioning_offline`: LAVIS's stock `captioning` task scored offline against a configured
COCO-format ground-truth file (NoCaps and other captioning benchmarks); see the class."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

from lavis.common.dist_utils import is_main_process
from lavis.common.registry import registry
from lavis.tasks.captioning import CaptionTask

from lavis_regionvlm.tasks.results import append_metrics

logger = logging.getLogger(__name__)

@registry.register_task("captioning_offline")
class OfflineCaptionTask(CaptionTask):
    """LAVIS's `captioning` task (same generation and results file) scored against a
    COCO-format ground-truth file named in the config, with nothing downloaded.

    The stock task always scores against COCO Karpathy val/test ground truth, downloaded from a
    fixed URL (wrong for NoCaps, impossible offline), and pycocoevalcap's `COCOEvalCap` computes
    SPICE, which downloads Stanford CoreNLP when its jars are missing. Here:
    - run `gt_files: {<split>: path}`: COCO caption JSON ({"images": [{"id"}], "annotations":
      [{"image_id", "caption", "id"}]}); a split without one falls back to the stock behaviour;
    - BLEU-1..4 and CIDEr always; METEOR and ROUGE-L too; PTB tokenization and METEOR when
      `java` is on PATH (otherwise a plain lower-case/punctuation tokenizer, and no METEOR);
    - SPICE (run `spice: auto | true | false`): auto uses it when Java and
      `pycocoevalcap/spice/lib/stanford-corenlp-3.6.0*.jar` are present and otherwise logs
      that it is skipped and reports `SPICE_skipped`; true fails without them; false skips.
    `agg_metrics` = CIDEr + BLEU-4, as the stock task.
    """

    def __init__(self, *args, gt_files: Optional[dict] = None, spice: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if str(spice).lower() not in ("auto", "true", "false"):
            raise ValueError(f"spice must be auto, true or false, got {spice!r}")
        self.gt_files = dict(gt_files or {})
        self.spice = str(spice).lower()

    @classmethod
    def setup_task(cls, cfg):
        run = cfg.run_cfg
        return cls(
            num_beams=run.num_beams, max_len=run.max_len, min_len=run.min_len, evaluate=run.evaluate,
            report_metric=run.get("report_metric", True), gt_files=run.get("gt_files", None),
            spice=run.get("spice", "auto"),
        )

    def _report_metrics(self, eval_result_file, split_name):
        if split_name not in self.gt_files:
            return super()._report_metrics(eval_result_file, split_name)
        if not is_main_process():
            return None
        metrics = caption_scores(self.gt_files[split_name], eval_result_file, spice=self.spice)
        metrics["agg_metrics"] = metrics["CIDEr"] + metrics["Bleu_4"]
        append_metrics(split_name, metrics)
        logging.info("%s caption metrics: %s", split_name, metrics)
        return metrics


def spice_available() -> tuple[bool, str]:
    """Whether pycocoevalcap's SPICE can run here without downloading anything, and why not."""
    import pycocoevalcap.spice.spice as spice_module

    if shutil.which("java") is None:
        return False, "java is not on PATH"
    lib = Path(spice_module.__file__).parent / "lib"
    for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"):
        if not (lib / name).is_file():
            return False, f"{lib / name} is missing (Stanford CoreNLP 3.6.0, which SPICE would download)"
    return True, ""


def caption_scores(gt_file: str, results_file: str, spice: str = "auto") -> dict:
    """pycocoevalcap scores of a LAVIS captioning results file against COCO-format ground truth."""
    import re

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocotools.coco import COCO

    coco = COCO(gt_file)
    results = coco.loadRes(results_file)
    ids = results.getImgIds()
    gts = {i: [{"caption": a["caption"]} for a in coco.imgToAnns[i]] for i in ids}
    res = {i: [{"caption": a["caption"]} for a in results.imgToAnns[i]] for i in ids}
    java = shutil.which("java") is not None
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tokenizer = PTBTokenizer()
        gts, res = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    else:
        logging.warning("java is not on PATH: plain tokenization instead of PTB; METEOR and SPICE skipped")
        plain = lambda d: {i: [" ".join(re.sub(r"[^\w\s]", " ", c["caption"].lower()).split()) for c in v]
                           for i, v in d.items()}
        gts, res = plain(gts), plain(res)
    scorers = [(Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]), (Rouge(), "ROUGE_L"), (Cider(), "CIDEr")]
    if java:
        from pycocoevalcap.meteor.meteor import Meteor

        scorers.append((Meteor(), "METEOR"))
    metrics: dict = {}
    use_spice, why = spice_available()
    if spice == "true" and not use_spice:
        raise RuntimeError(f"spice: true but SPICE cannot run: {why}")
    if spice == "false":
        use_spice, why = False, "spice: false in the config"
    if use_spice:
        from pycocoevalcap.spice.spice import Spice

        scorers.append((Spice(), "SPICE"))
    else:
        logging.warning("SPICE skipped: %s", why)
        metrics["SPICE_skipped"] = why
    for scorer, names in scorers:
        score, _ = scorer.compute_score(gts, res)
        if isinstance(names, list):
            metrics.update({n: float(s) for n, s in zip(names, score)})
        else:
            metrics[names] = float(score)
    metrics["count"] = len(ids)
    return metrics
