"""Reproduce the paper's evaluation tables with one command, beside the published numbers.

    python -m lavis_regionvlm.reproduce --data-root /data --checkpoint regionvlm.pth [--tables all]
    regionvlm reproduce --data-root /data --checkpoint regionvlm.pth --tables 1,4 --nproc 8

It checks every input, prints the plan (each evaluation, its size, a rough time), makes the
SAM proposals that are missing, runs each evaluation through `lavis_regionvlm.evaluate` on the
project YAML of `projects/regionvlm/` (so exactly the task code and settings of those YAMLs),
and writes `results.json` and `results.md` laid out as the paper's Tables 1-8. A finished
evaluation is not run again; a killed one starts over.

The data root is the `data/` folder the project YAMLs name (and `REGIONVLM_DATA` for the
global benchmarks):

    <data-root>/
      coco/images/train2014/            COCO train2014 images (RefCOCO, RefCOCO+, RefCOCOg)
      coco/images/val2014/              COCO val2014 images (VQAv2, OK-VQA)
      coco/annotations/                 vqa_val_eval.json, answer_list.json,
                                        v2_OpenEnded_mscoco_val2014_questions.json,
                                        v2_mscoco_val2014_annotations.json
      refer/refcoco/  refer/refcoco+/   refs(unc).p, instances.json
      refer/refcocog/                   refs(umd).p, instances.json
      sam_proposals/refcoco/ .../refcoco+/ .../refcocog/   made by the proposal job when missing
      sam/sam_vit_h_4b8939.pth          SAM ViT-H (only to make missing proposals)
      vcr/val.jsonl  vcr/vcr1images/    VCR 1.0 annotations and images
      okvqa/annotations/                okvqa_train.json, okvqa_val_eval.json,
                                        okvqa_answer_list_train.json,
                                        OpenEnded_mscoco_val2014_questions.json,
                                        mscoco_val2014_annotations.json
      gqa/annotations/                  {train,test,testdev}_balanced_questions.json
      gqa/images/
      nocaps/annotations/               nocaps_val.json, nocaps_test.json,
                                        nocaps_val_4500_captions.json
      nocaps/images/

`lavis_regionvlm.reproduce.inputs.SOURCES` says where to get each; `python -m
lavis_regionvlm.reproduce.synthetic_root --out DIR` writes this layout from the synthetic data.
"""
