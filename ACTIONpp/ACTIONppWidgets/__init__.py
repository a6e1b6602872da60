"""GUI controllers of the ACTIONpp module, duck-typed over Qt.

No Qt module is imported here: the module widget passes Slicer's ``qt`` (PythonQt) and its widgets; the widget tests
pass PySide6 widgets loaded from the same ``.ui`` file. Timers and dialogs are injected (:class:`common.Hooks`).
"""

from .common import Hooks
from .settings import SettingsBinding
from .curation import CurationPanel
from .review import ReviewPanel
from .segment import SegmentPanel
from .training import TrainingPanel

__all__ = ["CurationPanel", "Hooks", "ReviewPanel", "SegmentPanel", "SettingsBinding", "TrainingPanel"]
