"""claims: the papers' claims checked on this project's runs (`data/08_reporting/claims.md`)."""

from visprompt.pipelines.claims.pipeline import create_pipeline as create_pipeline
