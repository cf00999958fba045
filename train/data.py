"""The trainer's data layer, one import: shard sets -> per-worker sample streams -> SmolVLA batches,
resumable exactly. Each part is a module of its own:

- `train.spec`: the shard sets opened and checked together (`open_data` -> `DataSpec`), their stats;
- `train.balance`: `--task-balance`, samples of small tasks repeated;
- `train.stream`: each DataLoader worker's deterministic, resumable stream of batches
  (`TrainStream`, `ValStream`), episode-stratified by `train.stratify`;
- `train.batch`: a raw sample decoded straight into its batch row, and the shared-memory buffers
  workers decode into (`BatchBuffers`);
- `train.loader`: the DataLoader over a stream, and the trainer's batches (`make_loader`, `batches`).
"""

from train.balance import TaskRepeats, balance_tasks, task_balance_rows, task_repeats
from train.batch import (
    ACTION_KEY,
    LIST_KEYS,
    PAD_KEY,
    PREFETCH_ITEMS,
    STATE_KEY,
    BatchBuffers,
    BatchRef,
    SampleFormat,
    TensorSlot,
    batched,
    decode_batch,
)
from train.errors import DataSpecError, ShardReadError
from train.loader import batches, make_loader
from train.spec import (
    STAT_FIELDS,
    CameraSpec,
    DataSpec,
    ShardRef,
    ShardSource,
    manifest_fingerprint,
    merge_stats,
    open_data,
    parse_shards_arg,
)
from train.stratify import EpisodeSchedule, StratifiedBuffer, stratified_shuffle
from train.stream import (
    ShardChecks,
    Slot,
    SlotSource,
    TrainStream,
    ValStream,
    epoch_order,
    mixture_choices,
    plan_slot,
    rank_item,
    resume_point,
    slot_stream,
)

__all__ = [
    "ACTION_KEY",
    "LIST_KEYS",
    "PAD_KEY",
    "PREFETCH_ITEMS",
    "STATE_KEY",
    "STAT_FIELDS",
    "BatchBuffers",
    "BatchRef",
    "CameraSpec",
    "DataSpec",
    "DataSpecError",
    "EpisodeSchedule",
    "SampleFormat",
    "ShardChecks",
    "ShardReadError",
    "ShardRef",
    "ShardSource",
    "Slot",
    "SlotSource",
    "StratifiedBuffer",
    "TaskRepeats",
    "TensorSlot",
    "TrainStream",
    "ValStream",
    "balance_tasks",
    "batched",
    "batches",
    "decode_batch",
    "epoch_order",
    "make_loader",
    "manifest_fingerprint",
    "merge_stats",
    "mixture_choices",
    "open_data",
    "parse_shards_arg",
    "plan_slot",
    "rank_item",
    "resume_point",
    "slot_stream",
    "stratified_shuffle",
    "task_balance_rows",
    "task_repeats",
]
