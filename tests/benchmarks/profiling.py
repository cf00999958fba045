"""cProfile helpers: where the time of a measurement goes (py-spy / pyinstrument are not installed)."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable
from typing import Any


def top_functions(profile: cProfile.Profile, limit: int = 25, sort: str = "tottime") -> str:
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    return out.getvalue()


def profile_call(fn: Callable, *args: Any, out: str | None = None, limit: int = 25, **kwargs: Any) -> dict:
    """Run fn under cProfile (in this process only: profile with num_workers=0 / workers=1);
    returns fn's result with `profile_top` (by own time and by cumulative time) added."""
    profile = cProfile.Profile()
    profile.enable()
    try:
        result = fn(*args, **kwargs)
    finally:
        profile.disable()
    if out:
        profile.dump_stats(out)
    result = dict(result) if isinstance(result, dict) else {"result": result}
    result["profile_tottime"] = top_functions(profile, limit, "tottime")
    result["profile_cumtime"] = top_functions(profile, limit, "cumulative")
    return result
