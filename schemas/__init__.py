"""The data contract: R1Pro layouts, state presets, shard sample schema v1 and the manifest schema.

This package imports nothing from the rest of the project; `preprocess/`, `shards/` and `train/`
all meet here.
"""
