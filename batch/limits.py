"""The decode limits of a batch job: the service's, from the same settings.

A batch job applies what the service applies to an upload (size, duration, frame size, decode
time and the decode budget), so a file gets the same answer from either. The defaults are the
service's (``service/settings.py``) and, like it, read the ``ADAFOCUS_*`` variables; the
command line overrides them (``tests/batch/test_limits.py`` checks both agree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import get_args

from pipeline.frames.decode import LoopFilterSkip
from pipeline.frames.limits import DecodeLimits

# (setting, the service's default): the environment variable is ADAFOCUS_<SETTING>.
DEFAULTS: dict[str, float] = {
    "max_upload_mb": 200.0,
    "max_duration_s": 600.0,
    "max_pixels": 3840 * 2160,
    "decode_timeout_s": 30.0,
    "decode_budget_mpx": 6000.0,
}


class SettingError(ValueError):
    """An ``ADAFOCUS_*`` variable the service would refuse too."""


def skip_loop_filter_setting() -> LoopFilterSkip:
    """The service's decoder shortcut, ``ADAFOCUS_DECODE_SKIP_LOOP_FILTER`` (``none`` unless set)."""
    value = os.environ.get("ADAFOCUS_DECODE_SKIP_LOOP_FILTER", "none")
    if value not in get_args(LoopFilterSkip):
        raise SettingError(
            f"ADAFOCUS_DECODE_SKIP_LOOP_FILTER is {value!r}; use one of {', '.join(get_args(LoopFilterSkip))}"
        )
    return value  # type: ignore[return-value]  # checked above


def setting(name: str) -> float:
    """The value of setting ``name``: ``ADAFOCUS_<NAME>`` if set, else the service's default."""
    value = os.environ.get(f"ADAFOCUS_{name.upper()}")
    return float(value) if value is not None else DEFAULTS[name]


@dataclass(frozen=True)
class Limits:
    """What one video may cost, in the service's units (see ``service/settings.py``)."""

    max_upload_mb: float = DEFAULTS["max_upload_mb"]
    max_duration_s: float = DEFAULTS["max_duration_s"]
    max_pixels: int = int(DEFAULTS["max_pixels"])
    decode_timeout_s: float = DEFAULTS["decode_timeout_s"]
    decode_budget_mpx: float = DEFAULTS["decode_budget_mpx"]

    @classmethod
    def from_environment(cls) -> Limits:
        """The limits the service would run with in this environment."""
        return cls(
            max_upload_mb=setting("max_upload_mb"),
            max_duration_s=setting("max_duration_s"),
            max_pixels=int(setting("max_pixels")),
            decode_timeout_s=setting("decode_timeout_s"),
            decode_budget_mpx=setting("decode_budget_mpx"),
        )

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)

    def decode_limits(self) -> DecodeLimits:
        """The frame pipeline's limits, built as the service builds them (``service/app.py``)."""
        return DecodeLimits(
            max_bytes=self.max_bytes,
            max_duration_s=self.max_duration_s,
            max_pixels=self.max_pixels,
            max_wall_s=self.decode_timeout_s,
            max_decoded_pixels=int(self.decode_budget_mpx * 1e6),
        )
