"""Helpers shared by several features (like LAVIS's `lavis.common`), none of them specific to
one task or model.

- `progress`: a log-friendly progress line (done/total, rate, ETA).
- `overlay`: a binary mask painted over an image.
- `seeding`: the one rule that turns a seed and keys into a NumPy random generator.
"""
