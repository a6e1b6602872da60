"""The 3D Slicer application around the module, for tests: real where it can run here, stand-ins written from
Slicer's source where it cannot.

Real: the MRML scene and module logics (``slicer-core``), ``slicer.util`` (Slicer's own ``util.py``, shipped in the
``slicer-core`` wheel: ``loadUI``, ``childWidgetVariables``, ``settingsValue``, ``errorDisplay``, ``WaitCursor``,
``VTKObservationMixin``...), Qt widgets, signals and ``QTimer`` (PySide6 on the offscreen platform), engine processes.

Stand-ins, each following the Slicer file named in its docstring:

- ``qt``: PySide6 in PythonQt's single namespace, with PythonQt's property access for ``name`` (``objectName``),
  which Slicer's ``findChildren``/``childWidgetVariables`` rely on; ``qt.QUiLoader`` knows Slicer's designer widgets.
- Slicer's designer widgets used by the .ui: ``qMRMLWidget``, ``qMRMLNodeComboBox``, ``ctkCollapsibleButton``,
  ``ctkPathLineEdit`` (in ``slicer_widget_doubles``).
- ``slicer.ScriptedLoadableModule`` (``Base/Python/slicer/ScriptedLoadableModule.py``).
- ``slicer.parameterNodeWrapper`` (``Base/Python/slicer/parameterNodeWrapper/wrapper.py`` and ``serializers.py``).
- ``slicer.app`` (``Base/QTCore/qSlicerCoreApplication`` / ``Base/QTGUI/qSlicerApplication``) and ``slicer.modules``.

``SlicerApplication.install(monkeypatch)`` puts all of it in place for one test; ``openModule()`` then does what
Slicer's module manager does when the user opens the module: instantiate the module class with its parent, create the
widget, ``setup()``, ``enter()``.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import typing
import unittest
from pathlib import Path

from PySide6 import QtCore, QtGui, QtUiTools, QtWidgets
from slicer_widget_doubles import SLICER_DESIGNER_WIDGETS, connectUiConnections

MODULE_DIR = Path(__file__).resolve().parents[2] / "ACTIONpp"


# ---- qt (PythonQt) ------------------------------------------------------------------------------------------------
class UiLoader(QtUiTools.QUiLoader):
    """``qt.QUiLoader`` as in Slicer, where Qt Designer plugins provide the CTK and MRML widgets; the .ui file's
    ``<connections>`` with MRML signatures (``mrmlSceneChanged(vtkMRMLScene*)``) are made as uic makes them."""

    def __init__(self, parent=None):
        super().__init__(parent)
        for cls in SLICER_DESIGNER_WIDGETS:
            self.registerCustomWidget(cls)

    def load(self, device, parentWidget=None):
        widget = super().load(device, parentWidget) if parentWidget is not None else super().load(device)
        if widget is not None and isinstance(device, QtCore.QFile):
            connectUiConnections(widget, device.fileName())
        return widget


def makeQtModule() -> types.ModuleType:
    """Slicer's ``qt`` module: every Qt class in one namespace (PythonQt)."""
    module = types.ModuleType("qt")
    for source in (QtWidgets, QtCore, QtGui):
        for name in dir(source):
            if name.startswith("Q") or name == "Qt":
                setattr(module, name, getattr(source, name))
    module.QUiLoader = UiLoader
    return module


def makeCtkModule() -> types.ModuleType:
    module = types.ModuleType("ctk")
    for cls in SLICER_DESIGNER_WIDGETS:
        if cls.__name__.startswith("ctk"):
            setattr(module, cls.__name__, cls)
    return module


# ---- slicer.ScriptedLoadableModule ----------------------------------------------------------------------------------
def makeScriptedLoadableModule(app) -> types.ModuleType:
    """Follows ``Base/Python/slicer/ScriptedLoadableModule.py`` (Slicer 5.10 - main): each ``__init__`` starts with
    ``super().__init__()``; the module fills its parent's fields and registers its self-test; the widget reads
    developer mode from the settings, takes its parent's layout (or makes a parent and calls ``setup()`` when given
    none) and connects to the module manager's unload signal; the logic's ``getParameterNode`` returns the scene's
    singleton ``vtkMRMLScriptedModuleNode`` tagged with the module name."""
    import qt
    import slicer

    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            super().__init__()
            self.parent = parent
            self.moduleName = self.__class__.__name__
            parent.title = ""
            parent.categories = []
            parent.dependencies = []
            parent.contributors = ["Andras Lasso (PerkLab, Queen's University), Steve Pieper (Isomics)"]
            parent.helpText = "This module was created from a template and the help section has not yet been updated."
            parent.acknowledgementText = "This work is supported by NA-MIC, NAC, BIRN, NCIGT, and the Slicer Community."
            moduleDir = os.path.dirname(self.parent.path)
            for iconExtension in (".svg", ".png"):
                iconPath = os.path.join(moduleDir, "Resources/Icons", self.moduleName + iconExtension)
                if os.path.isfile(iconPath):
                    parent.icon = qt.QIcon(iconPath)
                    break
            if not hasattr(slicer, "selfTests"):
                slicer.selfTests = {}
            slicer.selfTests[self.moduleName] = self.runTest

        def resourcePath(self, filename):
            return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)

        def runTest(self, msec=100, **kwargs):
            testCaseClass = getattr(importlib.import_module(self.__module__), self.moduleName + "Test")
            testCase = testCaseClass()
            testCase.messageDelay = msec
            testCase.runTest(**kwargs)

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            super().__init__()
            self.moduleName = self.__class__.__name__
            if self.moduleName.endswith("Widget"):
                self.moduleName = self.moduleName[:-6]
            self.developerMode = slicer.util.settingsValue("Developer/DeveloperMode", False,
                                                           converter=slicer.util.toBool)
            if not parent:
                self.parent = slicer.qMRMLWidget()
                self.parent.setLayout(qt.QVBoxLayout())
                self.parent.setMRMLScene(slicer.mrmlScene)
            else:
                self.parent = parent
            self.layout = self.parent.layout()
            if not parent:
                self.setup()
                self.parent.show()
            slicer.app.moduleManager().connect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

        def resourcePath(self, filename):
            return os.path.join(os.path.dirname(slicer.util.modulePath(self.moduleName)), "Resources", filename)

        def cleanup(self):
            pass

        def _onModuleAboutToBeUnloaded(self, moduleName):
            if moduleName == self.moduleName:
                self.cleanup()

        def setupDeveloperSection(self):
            if not self.developerMode:
                return
            self.reloadCollapsibleButton = slicer_ctk().ctkCollapsibleButton()
            self.reloadCollapsibleButton.text = "Reload && Test"
            self.layout.addWidget(self.reloadCollapsibleButton)

        def setup(self):
            self.setupDeveloperSection()

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            super().__init__()
            self.moduleName = self.__class__.__name__
            if self.moduleName.endswith("Logic"):
                self.moduleName = self.moduleName[:-5]
            self.isSingletonParameterNode = True

        def getParameterNode(self):
            if self.isSingletonParameterNode:
                node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
                if node:
                    if node.GetAttribute("ModuleName") != self.moduleName:
                        node.SetAttribute("ModuleName", self.moduleName)
                    return node
            return slicer.mrmlScene.AddNode(self.createParameterNode())

        def createParameterNode(self):
            node = slicer.mrmlScene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
            node.UnRegister(None)
            if self.isSingletonParameterNode:
                node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node.SetName(slicer.mrmlScene.GenerateUniqueName(self.moduleName))
            return node

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def __init__(self, *args, **kwargs):
            self.moduleTestNames = []
            super().__init__(*args, **kwargs)
            super(unittest.TestCase, self).__init__()  # as Slicer: for mixins after TestCase (object's, here)
            self.enableScreenshots = False
            self.screenshotScaleFactor = 1.0
            if not self.moduleTestNames:
                self.moduleTestNames = [m for m in dir(self) if "test" in m and callable(getattr(self, m))]

        def delayDisplay(self, message, requestedDelay=None, msec=None):
            if hasattr(self, "messageDelay"):
                msec = self.messageDelay
            if msec is None:
                msec = requestedDelay
            if msec is None:
                msec = 100
            slicer.util.delayDisplay(message, msec)

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(module, cls.__name__, cls)
    module.__all__ = [cls.__name__ for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget,
                                                 ScriptedLoadableModuleLogic, ScriptedLoadableModuleTest)]
    return module


def slicer_ctk():
    return sys.modules["ctk"]


# ---- slicer.parameterNodeWrapper ------------------------------------------------------------------------------------
def makeParameterNodeWrapper() -> types.ModuleType:
    """Follows ``Base/Python/slicer/parameterNodeWrapper/wrapper.py`` for the plain types ACTIONpp uses (str, int,
    float, bool, pathlib.Path): class attributes are defaults; constructing the wrapper on a node writes every
    missing parameter's default into it; each field is a property that reads from / writes to the node with the
    serializers' string formats (``str(value)``; bools as "True"/"False"); ``StartModify``, ``EndModify``,
    ``AddObserver``, ``RemoveObserver`` and ``Modified`` go to the node. GUI binding (``connectGui``) is not
    reproduced: the module does not use it."""
    module = types.ModuleType("slicer.parameterNodeWrapper")

    def serializer(kind):
        if kind is bool:
            return (lambda v: "True" if v else "False"), (lambda s: s == "True")
        if kind in (int, float, str, Path):
            return str, kind
        raise TypeError(f"the parameterNodeWrapper stand-in has no serializer for {kind}")

    def parameterNodeWrapper(classtype):
        hints = typing.get_type_hints(classtype)
        parameters = {}
        for name, kind in hints.items():
            write, read = serializer(kind)
            default = getattr(classtype, name) if hasattr(classtype, name) else kind()
            parameters[name] = (write, read, default)

            def prop(name=name, write=write, read=read):
                return property(lambda self: read(self.parameterNode.GetParameter(name)),
                                lambda self, value: self.parameterNode.SetParameter(name, write(value)))

            setattr(classtype, name, prop())

        def __init__(self, parameterNode, prefix=None):
            self.parameterNode = parameterNode
            for name, (write, _, default) in parameters.items():
                if not parameterNode.GetParameterNames() or name not in parameterNode.GetParameterNames():
                    parameterNode.SetParameter(name, write(default))

        classtype.__init__ = __init__
        classtype.allParameters = parameters
        classtype.StartModify = lambda self: self.parameterNode.StartModify()
        classtype.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
        classtype.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(
            event, callback, priority)
        classtype.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
        classtype.Modified = lambda self: self.parameterNode.Modified()
        return classtype

    module.parameterNodeWrapper = parameterNodeWrapper
    return module


# ---- slicer.app and slicer.modules ---------------------------------------------------------------------------------
class ModuleManager(QtCore.QObject):
    """``qSlicerModuleManager``: the scripted widget connects to ``moduleAboutToBeUnloaded(QString)``."""

    moduleAboutToBeUnloaded = QtCore.Signal(str)

    def __init__(self, app):
        super().__init__()
        self.app = app

    def connect(self, signal, slot):  # PythonQt's string-signature connect
        getattr(self, signal.split("(")[0]).connect(slot)

    def module(self, name):
        return self.app.modules.get(name)


class Application(QtCore.QObject):
    """``slicer.app`` (``qSlicerApplication``) for what the module and ``slicer.util`` call: ``testingEnabled()``
    (message boxes return their preset answers, as with ``--testing``), ``startupEnvironment()``,
    ``moduleManager()``, ``layoutManager()`` (None: ``--no-main-window``), ``aboutToQuit``, cursors, events."""

    def __init__(self, qapp):
        super().__init__()
        self.qapp = qapp
        self.applicationName = "Slicer"
        self.modules = {}
        self._moduleManager = ModuleManager(self)

    @property
    def aboutToQuit(self):
        return self.qapp.aboutToQuit

    def testingEnabled(self):
        return True

    def startupEnvironment(self):
        return QtCore.QProcessEnvironment.systemEnvironment()

    def moduleManager(self):
        return self._moduleManager

    def layoutManager(self):
        return None

    def processEvents(self):
        self.qapp.processEvents()

    def setOverrideCursor(self, cursor):
        self.qapp.setOverrideCursor(cursor)

    def restoreOverrideCursor(self):
        self.qapp.restoreOverrideCursor()


class ModuleParent:
    """``qSlicerScriptedLoadableModule`` as the module class sees it (``parent``): descriptive fields and ``path``."""

    def __init__(self, path):
        self.path = str(path)
        self.title = ""
        self.icon = None


class SlicerApplication:
    """Installs the application for one test and opens the module as Slicer's module manager does."""

    def __init__(self, qapp, context, settingsDir: Path):
        self.qapp, self.context, self.settingsDir = qapp, context, settingsDir
        self.app = Application(qapp)
        self.moduleObject = self.widget = self.widgetParent = None
        self.shownCharts = []

    def install(self, monkeypatch) -> "SlicerApplication":
        import slicer
        import slicer.util

        QtCore.QSettings.setDefaultFormat(QtCore.QSettings.IniFormat)
        QtCore.QSettings.setPath(QtCore.QSettings.IniFormat, QtCore.QSettings.UserScope, str(self.settingsDir))
        # PythonQt exposes Qt properties as attributes: Slicer's findChildren reads ``widget.name`` (objectName).
        monkeypatch.setattr(QtCore.QObject, "name", property(lambda self: self.objectName()), raising=False)
        monkeypatch.setitem(sys.modules, "qt", makeQtModule())
        monkeypatch.setitem(sys.modules, "ctk", makeCtkModule())
        monkeypatch.setattr(slicer, "app", self.app, raising=False)
        monkeypatch.setattr(slicer, "mrmlScene", self.context.scene, raising=False)
        qMRMLWidget = next(cls for cls in SLICER_DESIGNER_WIDGETS if cls.__name__ == "qMRMLWidget")
        monkeypatch.setattr(slicer, "qMRMLWidget", qMRMLWidget, raising=False)
        monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(
            segmentations=types.SimpleNamespace(logic=lambda: self.context.segmentationsLogic),
            volumes=types.SimpleNamespace(logic=lambda: next(logic for logic in self.context.keepAlive
                                                             if logic.IsA("vtkSlicerVolumesLogic"))),
            plots=types.SimpleNamespace(logic=self._plotsLogic),
            actionpp=types.SimpleNamespace(path=str(MODULE_DIR / "ACTIONpp.py"))), raising=False)
        monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", makeScriptedLoadableModule(self.app))
        monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", makeParameterNodeWrapper())
        monkeypatch.syspath_prepend(str(MODULE_DIR))  # Slicer puts each module folder on sys.path
        for name in [n for n in sys.modules if n == "ACTIONpp" or n.startswith(("ACTIONppWidgets",))]:
            monkeypatch.delitem(sys.modules, name)
        return self

    def _plotsLogic(self):
        """The Plots module's logic; with no layout (``--no-main-window``) showing a chart only records it."""
        return types.SimpleNamespace(ShowChartInLayout=self.shownCharts.append)

    def openModule(self):
        """Import ACTIONpp.py, instantiate the module class with its parent, then (the user opens the module) make
        the widget inside a ``qMRMLWidget`` with a vertical layout, ``setup()`` and ``enter()`` it."""
        import qt
        import slicer

        mod = importlib.import_module("ACTIONpp")
        self.moduleObject = mod.ACTIONpp(ModuleParent(MODULE_DIR / "ACTIONpp.py"))
        self.widgetParent = slicer.qMRMLWidget()
        self.widgetParent.setLayout(qt.QVBoxLayout())
        self.widgetParent.setMRMLScene(slicer.mrmlScene)
        self.widgetParent.isEntered = False
        self.widget = mod.ACTIONppWidget(self.widgetParent)
        self.widget.setup()
        self.widgetParent.isEntered = True
        self.widget.enter()
        self.app.modules["ACTIONpp"] = self.moduleObject
        return mod

    def close(self) -> None:
        if self.widget is not None:
            self.app.moduleManager().moduleAboutToBeUnloaded.emit("ACTIONpp")
            self.widgetParent.deleteLater()
