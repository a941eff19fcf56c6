"""visprompt: adapt frozen timm backbones to new image-classification tasks by prompting."""

__version__ = "0.1.0"
