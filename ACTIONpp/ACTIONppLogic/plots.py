"""Training curves as MRML nodes: two table nodes, two plot series and one plot chart.

The chart shows the total loss (line) and the validation mean Dice (line with markers) against the iteration. The
widget puts the chart in the layout (``slicer.modules.plots.logic().ShowChartInLayout(chart)``); this file only
builds and fills the nodes, so it runs under ``slicer-core``.
"""

from __future__ import annotations

import slicer
import vtk

from . import mrml


class TrainingCurvesPlot:
    """Owns the chart and feeds it from :class:`ACTIONppLogic.jobs.Curves` at each :meth:`update`."""

    SERIES = (("loss", "Loss", (0.17, 0.45, 0.70), False), ("val_dice", "Validation Dice", (0.90, 0.45, 0.10), True))

    def __init__(self, scene, name: str = "ACTIONpp training"):
        self.scene = scene
        self.chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", mrml.uniqueName(scene, name))
        self.chart.SetTitle(name)
        self.chart.SetXAxisTitle("Iteration")
        self.chart.SetYAxisTitle("Loss / Dice")
        self.tables = {}
        self.seriesNodes = {}
        for key, title, colour, markers in self.SERIES:
            table = scene.AddNewNodeByClass("vtkMRMLTableNode", mrml.uniqueName(scene, f"{name} {title}"))
            for columnName in ("iteration", key):
                column = vtk.vtkDoubleArray()
                column.SetName(columnName)
                table.AddColumn(column)
            series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", mrml.uniqueName(scene, title))
            series.SetAndObserveTableNodeID(table.GetID())
            series.SetXColumnName("iteration")
            series.SetYColumnName(key)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
            series.SetColor(*colour)
            series.SetMarkerStyle(series.MarkerStyleCircle if markers else series.MarkerStyleNone)
            self.chart.AddAndObservePlotSeriesNodeID(series.GetID())
            self.tables[key] = table
            self.seriesNodes[key] = series
        self._counts = {key: -1 for key in self.tables}

    def update(self, curves) -> None:
        """Copy the ``loss`` and ``val_dice`` series of ``curves`` into the tables (only those that changed)."""
        for key, table in self.tables.items():
            points = curves[key]
            signature = (len(points), points[-1] if points else None)
            if signature == self._counts[key]:
                continue
            self._counts[key] = signature
            vtable = table.GetTable()
            xs, ys = vtable.GetColumn(0), vtable.GetColumn(1)
            xs.SetNumberOfTuples(len(points))
            ys.SetNumberOfTuples(len(points))
            for i, (iteration, value) in enumerate(points):
                xs.SetValue(i, iteration)
                ys.SetValue(i, value)
            xs.Modified()
            ys.Modified()
            vtable.Modified()
            table.Modified()

    def values(self, key: str) -> list[tuple[float, float]]:
        """What the table for ``key`` holds now (tests and the in-app self-test read it)."""
        vtable = self.tables[key].GetTable()
        xs, ys = vtable.GetColumn(0), vtable.GetColumn(1)
        return [(xs.GetValue(i), ys.GetValue(i)) for i in range(vtable.GetNumberOfRows())]

    def remove(self) -> None:
        for node in (*self.seriesNodes.values(), *self.tables.values(), self.chart):
            self.scene.RemoveNode(node)

