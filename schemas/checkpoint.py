"""The checkpoint format train writes and deploy reads: lerobot's own SmolVLA checkpoint (its
`config.json` read by lerobot) plus our `b1k_provenance.json`. Reading the policy config lives here,
once, so that both sides accept and refuse the same checkpoints."""

from __future__ import annotations


def read_smolvla_config(location: str):
    """The SmolVLA config of a checkpoint (a directory, or a Hub id lerobot resolves); ValueError
    saying what is wrong when it cannot be read or is another policy type."""
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

    try:
        config = PreTrainedConfig.from_pretrained(location)
    except Exception as exc:
        raise ValueError(f"cannot read the policy config ({exc})") from exc
    if not isinstance(config, SmolVLAConfig):
        raise ValueError(f"a {config.type!r} policy, not a SmolVLA one")
    return config
