"""Datasets, loaders and the synthetic data generator of the RegionVLM plugin."""
