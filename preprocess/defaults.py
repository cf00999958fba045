"""Option defaults, in a module that imports nothing: `b1k-preprocess` builds its command line (and
starts its episode workers) before it imports numpy, PyAV or pyarrow."""

DEFAULT_MAX_SIDE = 512  # --image-size: cap the longest side (head 720 -> 512, wrists stay 480)
DEFAULT_JPEG_QUALITY = 90
DEFAULT_SHARD_MAX_BYTES = 1 << 30
DEFAULT_SHARD_MAX_SAMPLES = 10_000
DEFAULT_INTERLEAVE_WINDOW = 64
