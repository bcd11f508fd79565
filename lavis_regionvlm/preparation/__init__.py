"""Data preparation and the synthetic data generator of the RegionVLM plugin.

- `narratives`: Localized Narratives records (image and video) -> phrase samples with points.
- `prepare_ln` (command): raw LN JSONL -> a compact, indexed folder (`ln_prepared` format).
- `prepare_synthetic` (command): prepares the LN files of a synthetic dataset.
- `records`: offset-indexed JSONL and string tables, read lazily.
- `skips`: the kinds of skipped data and their counts.
- `synthetic`: a small dataset in the real on-disk formats.
"""
