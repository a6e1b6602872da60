"""Non-GUI logic of the ACTIONpp Slicer module.

Everything here runs inside the Slicer application and, for CI, under plain Python with the ``slicer-core`` wheel:
no ``slicer.app``, ``slicer.modules`` or Qt is touched. Scene and module logics are passed in.

Submodules (imported on demand, so that ``jobs``, ``registry`` and ``dependencies`` work without VTK):

- ``engine``: where the ``actionpp`` engine lives and how to launch it.
- ``mrml``: headless scene set-up, storage-node reading/writing, segmentation converter rules.
- ``export``: curation check and export of volumes + segmentations to an nnU-Net raw dataset.
- ``prediction``: import of a predicted label map as a new segmentation node.
- ``jobs``: training / prediction subprocesses, events.jsonl progress, cancel, resume.
- ``registry``: trained models found in a runs folder.
- ``dependencies``: what the engine needs that is missing, and the install plan.
- ``plots``: loss / Dice curves as MRML table + plot nodes.
- ``core``: ``ModuleLogic``, the facade the widget and the batch script use.
"""
