"""Settings declared once: a field's default and its bounds side by side.

Every typed table the agent reads — detector settings, the incident lifecycle, the
daemon's own tables, sink options — declares its fields with ``setting()``:

    min_repeats: int = setting(5, min=1)                 # a count ≥ 1
    spike_share: float = setting(0.5, min=0.0, max=1.0)  # a share in 0–1
    window_s: float = setting(60.0, above=0.0)           # a duration > 0 (and finite)
    mode: str = setting("end", choices=("end", "beginning"))

The one validator (``agent.config_values.table``) reads these bounds, so a value is
checked the same way and worded the same way wherever it comes from (``config check``,
``run``, ``scan --config``). Detectors may import this module: it is a leaf (no import
of the rest of the agent).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional, Tuple

BOUNDS_KEY = "railwatch.bounds"


@dataclass(frozen=True)
class Bounds:
    min: Optional[float] = None  # value >= min
    max: Optional[float] = None  # value <= max
    above: Optional[float] = None  # value > above (durations: above=0.0)
    choices: Tuple[Any, ...] = ()  # the value (or each item of a tuple) must be one of these
    secret: bool = False  # masked by `config show`; may come from `<key>_file` / `env:`


def setting(default: Any, *, min: Optional[float] = None, max: Optional[float] = None,
            above: Optional[float] = None, choices: Tuple[Any, ...] = (), secret: bool = False) -> Any:
    """A dataclass field with a default and the bounds the validator enforces."""
    return dataclasses.field(default=default, metadata={BOUNDS_KEY: Bounds(min, max, above, tuple(choices), secret)})


def bounds_of(f: "dataclasses.Field[Any]") -> Bounds:
    return f.metadata.get(BOUNDS_KEY) or Bounds()
