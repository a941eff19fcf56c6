"""profiling pipeline: efficiency of every trained run next to the bare frozen backbone."""

from visprompt.pipelines.profiling.pipeline import create_pipeline as create_pipeline
