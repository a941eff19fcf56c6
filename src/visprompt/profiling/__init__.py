"""Efficiency profiling: parameters, FLOPs, step time, throughput, latency, peak memory.

A torch library (no Kedro, no MLflow): `profile_models` measures several models side by
side in one process, with ratios to the bare frozen backbone. Method-specific experiments
(`make bench`: every method on real-size backbones, the VPT prompt-length curve) live in
`benchmarks/`.
"""

from visprompt.profiling.dataload import DataWait, measure_data_wait
from visprompt.profiling.flops import BackwardCost, backward_cost, forward_flops
from visprompt.profiling.memory import peak_memory_mb
from visprompt.profiling.profile import COLUMNS, REFERENCE, ProfileSettings, profile_models
from visprompt.profiling.report import efficiency_markdown, to_markdown

__all__ = [
    "COLUMNS",
    "REFERENCE",
    "BackwardCost",
    "DataWait",
    "ProfileSettings",
    "backward_cost",
    "forward_flops",
    "measure_data_wait",
    "efficiency_markdown",
    "peak_memory_mb",
    "profile_models",
    "to_markdown",
]
