"""Models: names → modules (the zoo), the built-in networks, weights loading, the classifier head.

* :mod:`.zoo` — ``"resnet50"``, ``"timm:convnext_tiny"``, ``"pkg.module:factory"``, ``"file.py:factory"`` → a module,
  built on the meta device when only shapes are needed; never downloads weights;
* :mod:`.builtin` — the RFF paper's base CNN and paper 002's CNNs; :mod:`.audio` — two 1-D audio nets;
* :mod:`.head` — the one classifier finder (the trainer and the rewrites agree on it);
* :mod:`.weights` — trained weights into a model, never unpickling code;
* :mod:`.onnx_file` — an ONNX file as a model of meta initializers (analysed from its graph, never run).

A new built-in model: a class in :mod:`.builtin` (or its own module) and one entry in ``BUILTIN``.
"""

from .builtin import BUILTIN, P002VGG, P002ResNet, P002SmallCNN, RFFBaseCNN
from .zoo import ModelNotFound, ModelSpec, build, parse_size, resolve

__all__ = ["BUILTIN", "ModelNotFound", "ModelSpec", "P002ResNet", "P002SmallCNN", "P002VGG", "RFFBaseCNN", "build",
           "parse_size", "resolve"]
