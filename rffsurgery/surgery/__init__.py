"""Parameter-saving rewrites (docs/rewrites.md): FC head → grouped FC + Meta, Conv2d → channel-sliding Conv3d.

::

    from rffsurgery.surgery import rewrite, save, load
    done = rewrite("resnet50", meta_groups=16)           # or rewrite(model, conv3d_filters=8)
    save(done, "out/")                                   # recipe.json + state_dict.pt
    model = load("out/")                                 # same architecture and weights
"""

from .conv3d import rewrite_conv3d
from .head import head_layers, rewrite_head
from .layers import ChannelConv3d, GroupedLinear, Meta
from .recipe import Recipe, Rewritten, load, rebuild, rewrite, save
from .select import Change, Rewrite, RewriteError, Skip

__all__ = ["Change", "ChannelConv3d", "GroupedLinear", "Meta", "Recipe", "Rewrite", "RewriteError", "Rewritten",
           "Skip", "head_layers", "load", "rebuild", "rewrite", "rewrite_conv3d", "rewrite_head", "save"]
