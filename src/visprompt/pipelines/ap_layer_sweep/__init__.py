"""ap_layer_sweep: AP at every stage/block of the CNN and the ViT, accuracy and cost per layer."""

from visprompt.pipelines.ap_layer_sweep.pipeline import create_pipeline as create_pipeline
