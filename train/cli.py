"""`b1k-train`: fine-tune SmolVLA on one or more shard sets.

The options are `TrainConfig`'s fields (`train.config`: name, type, default, help), made into click
options here; `--config FILE` reads the same options from YAML or JSON, and the command line overrides
the file. Errors, `--debug`, `-v`, the logging setup and the `--x_y` spellings: `shards.command`.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from shards.command import Exits, command
from train.config import RECORDED_ONLY, Option, TrainConfig, option_of

# "error: ..." and status 2; a non-finite loss exits 3 (`NonFiniteLossError.exit_status`).
EXITS = Exits(error=2)
_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


# ----------------------------------------------------------------------------- options from TrainConfig


def _base_type(hint: Any) -> Any:
    """`int | None` -> int, `list[str]` -> list."""
    if typing.get_origin(hint) is list:
        return list
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _click_type(base: Any, spec: Option) -> Any:
    if spec.choices:
        return click.Choice(spec.choices)
    if base is int:
        return int if spec.min is None else click.IntRange(min=spec.min)
    if base is float and spec.open_range is not None:
        return click.FloatRange(*spec.open_range, min_open=True, max_open=True)
    if base is Path:
        return click.Path(file_okay=False, path_type=Path)
    return float if base is float else str


def _default(f: dataclasses.Field) -> Any:
    """The field's default as the command line spells it (a list joined by its separator)."""
    spec = option_of(f)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return spec.separator.join(value) if spec.separator else value
    return None if f.default is dataclasses.MISSING else f.default


def click_option(f: dataclasses.Field) -> click.Option:
    """The click option of one `TrainConfig` field (its `_` spelling comes from `shards.command`)."""
    spec, base = option_of(f), _base_type(_HINTS[f.name])
    name = "--" + f.name.replace("_", "-")
    default = _default(f)
    common = {"help": spec.help, "metavar": spec.metavar}
    if base is bool and spec.flag:
        return click.Option([name, *spec.aliases, f.name], is_flag=True, default=False, **common)
    if base is bool:
        switch = f"{name}/--no-{name[2:]}"
        return click.Option([switch, f.name], default=default, show_default=default is not None, **common)
    if spec.bare is not None:
        return click.Option([name, f.name], is_flag=False, flag_value=spec.bare, default=None, **common)
    if base is list and spec.separator is None:
        return click.Option([name, f.name], multiple=True, required=default is None, **common)
    return click.Option(
        [name, *spec.aliases, f.name],
        type=_click_type(base, spec),
        default=default,
        show_default=default is not None,
        **common,
    )


# ----------------------------------------------------------------------------- --config FILE


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping a YAML or JSON file holds (JSON by its .json suffix, YAML otherwise)."""
    try:
        data = _parse(path.read_text(), json_file=path.suffix.lower() == ".json")
    except ValueError as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise click.BadParameter(f"{path}: cannot be read as {kind} ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of options, got {type(data).__name__}")
    return data


def _parse(text: str, json_file: bool) -> Any:
    if json_file:
        return json.loads(text)
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).replace("\n", " ")) from None


def _field_names() -> dict[str, str]:
    """Every accepted key (`batch_size`, `batch-size`, `--batch-size`, `save_steps`, ...) -> its field."""
    names = {}
    for f in _FIELDS.values():
        for spelling in (f.name, *option_of(f).aliases):
            names[spelling.lstrip("-").replace("-", "_")] = f.name
    return names


def defaults_from_file(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A config file's options as click defaults (`Context.default_map`): keys spelled either way,
    values as the command line gives them; an unknown key is an error naming it."""
    names, out, unknown = _field_names(), {}, []
    for key, value in data.items():
        normal = str(key).lstrip("-").replace("-", "_")
        if normal in RECORDED_ONLY:  # a run's record, read back: what it ran with, not an option
            continue
        if normal not in names:
            unknown.append(str(key))
            continue
        f = _FIELDS[names[normal]]
        spec = option_of(f)
        if value is None:  # None is the default of every option that may be None ...
            if spec.none is None:
                continue
            value = spec.none  # ... but --pretrained-model's, spelled 'none'
        elif spec.separator and isinstance(value, list | tuple):
            value = spec.separator.join(str(v) for v in value)
        elif _base_type(_HINTS[f.name]) is list and isinstance(value, str):
            value = [value]
        out[f.name] = value
    if unknown:
        raise click.BadParameter(
            f"{path}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))} "
            "(the keys are b1k-train's options, spelled batch_size or batch-size)"
        )
    return out


def _load_config(ctx: click.Context, _param: click.Parameter, path: Path | None) -> Path | None:
    """`--config`, read first (eager): its options become the defaults the command line overrides."""
    if path is not None:
        ctx.default_map = {**(ctx.default_map or {}), **defaults_from_file(read_config_file(path), path)}
    return path


CONFIG_OPTION = click.Option(
    ["--config", "config"],
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    metavar="FILE",
    help="Read the options from a YAML or JSON file (keys as the options are named, batch_size or "
    "batch-size); options given on the command line override it. A run's record of its options "
    "(b1k_train_config.json in its --output-dir) is such a file.",
)


# ----------------------------------------------------------------------------- the command


def train_config(values: dict[str, Any], ctx: click.Context) -> TrainConfig:
    """The parsed options as a `TrainConfig`: lists as lists, `none` as None, and `--vlm-model` given
    without `--pretrained-model` meaning no SmolVLA weights."""
    out = {}
    for name, f in _FIELDS.items():
        spec, value = option_of(f), values[name]
        if spec.none is not None and isinstance(value, str) and value.lower() == spec.none:
            value = None
        elif spec.separator is not None:
            value = [part.strip() for part in value.split(spec.separator) if part.strip()]
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    if out["vlm_model"] and ctx.get_parameter_source("pretrained_model") == ParameterSource.DEFAULT:
        out["pretrained_model"] = None
    return TrainConfig(**out)


@command("b1k-train", EXITS, params=[CONFIG_OPTION, *map(click_option, _FIELDS.values())])
def main(**values: Any) -> None:
    """Fine-tune lerobot's SmolVLA on WebDataset shard sets written by b1k-preprocess.

    Runs on one device as is, on several with `torchrun --nproc_per_node N -m train.cli ...` (DDP).
    Checkpoints are in lerobot's format: SmolVLAPolicy.from_pretrained(<output-dir>/checkpoints/last) loads one
    (so does .../last/pretrained_model, lerobot's own layout), and so do lerobot's processor pipelines.
    """
    from shards.command import process_rank
    from train.loop import train

    result = train(train_config(values, click.get_current_context()))
    if not process_rank():
        click.echo(f"done: step {result.step}; last checkpoint {result.last_checkpoint}")


if __name__ == "__main__":
    main()
