"""The shard file format: write, read, verify and merge WebDataset shard sets (schema v1).

Knows tar files, manifests and stats; knows nothing about SmolVLA or video.
"""
