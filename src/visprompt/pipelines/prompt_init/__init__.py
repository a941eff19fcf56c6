"""prompt_init pipeline: Self-Prompt Tuning initial prompts for VPT runs."""

from visprompt.pipelines.prompt_init.pipeline import create_pipeline as create_pipeline
