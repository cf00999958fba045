"""`b1k-eval`: which checkpoint is better, and where in the episode (open-loop action error on held-out
episodes, through the same policy object `b1k-serve` runs).

The flow: `config` (options) -> `frames` (which frames of the split, their recorded actions) ->
`inputs` (a frame's observation as the policy's inputs) -> `replay` (open loop, the baseline, and the
executed chunks) -> `tally` (errors per group, progress bin, chunk step, task, skill) -> `report`
(report.json, tables, the plot); `evaluate` runs it and `cli` is the command.
"""
