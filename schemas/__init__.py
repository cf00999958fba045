"""The data contract: R1Pro layouts, state presets, shard sample schema v1 and the manifest schema.

This package imports nothing from the rest of the project; `preprocess/`, `shards/`, `train/` and
`deploy/` all meet here. The checkpoint format is here too (`schemas.checkpoint`, and
`schemas.processor_steps`, the lerobot processor steps checkpoints save: the one module here that imports
lerobot and torch when imported, which `import schemas` does not do).
"""
