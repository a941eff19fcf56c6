"""A suite task trains AP at several layers of one backbone in one process (its tuning
trials and seeds): the prefix cache kept from one layer must never serve another. (Their
frozen tensors are the same backbone's, so only the cut tells the prefixes apart.)"""

from __future__ import annotations

from tiny import make_backbone

from visprompt import methods
from visprompt.training import prefix_cache


class _Data:
    """The two methods of a dataset that the reuse key reads (content hash, size)."""

    nbytes = 1

    def content_digest(self) -> str:
        return "same data"


def test_ap_at_two_layers_of_one_backbone_gets_two_cache_keys() -> None:
    backbone = make_backbone("vit")
    keys, digests = set(), set()
    for layer in ("blocks.0", "blocks.1"):
        model = methods.build("ap", backbone, 4, layer=layer)
        prefix, _ = model.split_for_cache()
        digests.add(prefix_cache.frozen_state_digest(model))
        keys.add(prefix_cache.reuse_key(prefix, digests.copy().pop(), _Data(), "cpu", 16))
    assert len(digests) == 1 and len(keys) == 2
