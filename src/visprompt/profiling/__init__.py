"""Efficiency profiling (parameters, FLOPs, step time, throughput, latency, peak memory) of
models side by side, with ratios to the bare frozen backbone. Torch only; method experiments
(`make bench`) live in `benchmarks/`."""

from visprompt.profiling.flops import backward_cost, forward_flops
from visprompt.profiling.profile import COLUMNS, REFERENCE, ProfileSettings, profile_models

__all__ = [
    "COLUMNS",
    "REFERENCE",
    "ProfileSettings",
    "backward_cost",
    "forward_flops",
    "profile_models",
]
