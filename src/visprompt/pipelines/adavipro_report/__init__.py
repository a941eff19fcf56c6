"""adavipro_report: the pad-width sweep (vp vs adavipro) and the AdaViPro region figure."""

from visprompt.pipelines.adavipro_report.pipeline import create_pipeline as create_pipeline
