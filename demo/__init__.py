"""The built-in demo world, not the product: what `make demo` and the tests run the product on.

- `demo.synthetic`: small synthetic BEHAVIOR (R1Pro) LeRobot datasets in the published layouts (2025
  v2.1/v3.0, 2026 as published and its per-task copies), every pixel, state and action coded so that
  a test can prove where it went (`b1k-synthetic-dataset`);
- `demo.backbone`: a tiny random-weight SmolVLM backbone built offline, or one with the real
  SmolVLM2-500M sizes (`b1k-tiny-backbone`);
- `demo.run` (`python -m demo`, `make demo`): the whole mission through the real commands, with
  `demo.runner`, `demo.summary` and `demo.reload`.

Nothing in `preprocess/`, `shards/`, `train/` or `deploy/` imports it.
"""
