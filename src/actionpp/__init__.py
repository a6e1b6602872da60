"""ACTION++ engine: semi-supervised segmentation with adaptive anatomical contrast.

Pure PyTorch + MONAI; never imports Slicer or Qt, and places tensors on the device named in the config.
"""

__version__ = "0.1.0"
