"""visprompt: adapt frozen timm backbones to new image-classification tasks with visual prompting."""

__version__ = "0.1.0"
