"""LabelZoo: the 3D Slicer module of the LabelZoo annotation stack.

This file only moves data between Qt widgets / MRML nodes and ``LabelZooLib`` (plain Python, tested
without Slicer): the HTTP client, the label table and label-map merging, the session state machine and
the settings all live there.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import traceback

import numpy as np
import qt
import slicer
import vtk
from LabelZooLib import (
    BackgroundCall,
    LabelTable,
    LabelZooClient,
    LabelZooLibError,
    PromptBook,
    Session,
    Settings,
    labelmap_to_segments,
    lasso_contour,
    merge_labelmap,
    merge_region,
    model_options,
    option_values,
    prior_labelmap,
    remap_labelmap,
    resample_to,
    sample_choice,
    segments_to_labelmap,
    stroke_voxels,
)
from LabelZooLib.labels import MERGE_MODES
from LabelZooLib.team import image_team
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

logger = logging.getLogger(__name__)

SETTINGS_GROUP = "LabelZoo"
TRAIN_POLL_MS = 5000
PROMPT_POLL_MS = 100


class LabelZoo(ScriptedLoadableModule):
    """Module description shown by Slicer."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "LabelZoo"
        self.parent.categories = ["Active Learning"]
        self.parent.dependencies = ["Segmentations", "SegmentEditor"]
        self.parent.contributors = ["LabelZoo developers"]
        self.parent.helpText = (
            "Annotate with a LabelZoo (MONAI Label) server: connect, fetch the next sample chosen by active "
            "learning, auto-segment it with a model, correct it in the Segment Editor, submit the label and "
            "train. See the LabelZoo README, section 'The 3D Slicer extension'."
        )
        self.parent.acknowledgementText = "Built on MONAI and MONAI Label (Apache-2.0)."


def reported(method):
    """Run a widget slot; show a LabelZooLibError's message (or an unexpected error) in one dialog."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            with slicer.util.WaitCursor():
                return method(self, *args, **kwargs)
        except LabelZooLibError as e:
            logger.warning("%s", e)
            self.ui.statusLabel.setText(str(e))
            slicer.util.errorDisplay(str(e), windowTitle="LabelZoo")
        except Exception as e:  # a bug: show it with its traceback instead of failing silently
            logger.exception("LabelZoo: %s failed", method.__name__)
            slicer.util.errorDisplay(f"{method.__name__} failed: {e}", windowTitle="LabelZoo",
                                     detailedText=traceback.format_exc())
        finally:
            self.updateButtons()

    return wrapper


class LabelZooWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: widgets in, Lib calls, widgets out."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.session = Session()
        self.client = None
        self.settings = Settings()
        self.volumeNode = None
        self.segmentationNode = None
        self.tmpdir = tempfile.mkdtemp(prefix="labelzoo-slicer-")
        self._updatingSegmentation = False
        self.trainTimer = qt.QTimer()
        self.prompts = PromptBook()
        self.promptNode = None
        self.promptKind = None
        self.boxCorner = None
        self.shapeNode = None  # the scribble (curve) or lasso (closed curve) being drawn
        self.placed = {}  # segment -> [markup node or (point node, None)] per prompt, for undo
        self.pending = None  # (BackgroundCall, what to do with its answer) of the request in flight
        self.promptTimer = qt.QTimer()
        self.shortcuts = []

    # -- set-up ------------------------------------------------------------------------------------------

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LabelZoo.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LabelZooLogic()

        self.ui.nextSampleButton.setIcon(qt.QIcon(self.resourcePath("Icons/next.svg")))
        self.ui.segmentButton.setIcon(qt.QIcon(self.resourcePath("Icons/segment.svg")))
        self.ui.submitButton.setIcon(qt.QIcon(self.resourcePath("Icons/save.svg")))
        self.ui.trainButton.setIcon(qt.QIcon(self.resourcePath("Icons/train.svg")))
        self.ui.stopTrainButton.setIcon(qt.QIcon(self.resourcePath("Icons/stop.svg")))
        self.ui.uploadButton.setIcon(qt.QIcon(self.resourcePath("Icons/upload.svg")))

        self.ui.mergeModeComboBox.addItems(list(MERGE_MODES))
        self.ui.modelOptionsTable.setHorizontalHeaderLabels(["option", "value"])
        self.ui.modelOptionsTable.horizontalHeader().setStretchLastSection(True)

        editor = self.ui.embeddedSegmentEditorWidget
        editor.setMRMLScene(slicer.mrmlScene)
        editor.setMRMLSegmentEditorNode(self.logic.segmentEditorNode())

        self.loadSettings()  # before the settings widgets are connected: loading must not save half a state

        self.ui.connectButton.clicked.connect(self.onConnect)
        self.ui.nextSampleButton.clicked.connect(self.onNextSample)
        self.ui.segmentButton.clicked.connect(self.onSegment)
        self.ui.submitButton.clicked.connect(self.onSubmit)
        self.ui.discardButton.clicked.connect(self.onDiscard)
        self.ui.uploadButton.clicked.connect(self.onUpload)
        self.ui.trainButton.clicked.connect(self.onTrain)
        self.ui.stopTrainButton.clicked.connect(self.onStopTrain)
        self.ui.modelComboBox.currentTextChanged.connect(self.onModelChanged)
        self.ui.strategyComboBox.currentTextChanged.connect(self.onStrategyChanged)
        for box in (self.ui.autoNextSampleCheckBox, self.ui.autoSegmentCheckBox, self.ui.autoTrainCheckBox,
                    self.ui.verifyTlsCheckBox):
            box.toggled.connect(self.saveSettings)
        self.ui.mergeModeComboBox.currentTextChanged.connect(self.saveSettings)
        self.trainTimer.timeout.connect(self.onTrainTimer)
        # several annotators: open another annotator's label (or a prior version) read-only, to compare
        self.compareButton = qt.QPushButton("Compare with another annotator's label")
        self.compareButton.toolTip = "Load another annotator's label of this image as a locked segmentation"
        self.layout.addWidget(self.compareButton)
        self.compareButton.clicked.connect(self.onCompare)
        self.ui.foregroundPointButton.clicked.connect(lambda: self.startPrompt("foreground"))
        self.ui.backgroundPointButton.clicked.connect(lambda: self.startPrompt("background"))
        self.ui.boxButton.clicked.connect(lambda: self.startPrompt("box"))
        self.ui.scribbleButton.clicked.connect(lambda: self.startShape("scribble"))
        self.ui.backgroundScribbleButton.clicked.connect(lambda: self.startShape("scribble", background=True))
        self.ui.lassoButton.clicked.connect(lambda: self.startShape("lasso"))
        self.ui.finishPromptButton.clicked.connect(self.onFinishShape)
        self.ui.refineCheckBox.toggled.connect(self.onRefineToggled)
        self.ui.undoPromptButton.clicked.connect(self.onUndoPrompt)
        self.ui.cancelPromptButton.clicked.connect(self.onCancelPrompt)
        self.promptTimer.timeout.connect(self.onPromptTimer)
        for key, slot in (("F", lambda: self.startPrompt("foreground")), ("B", lambda: self.startPrompt("background")),
                          ("X", lambda: self.startPrompt("box")), ("S", lambda: self.startShape("scribble")),
                          ("Shift+S", lambda: self.startShape("scribble", background=True)),
                          ("L", lambda: self.startShape("lasso")), ("Return", self.onFinishShape),
                          ("R", lambda: self.ui.refineCheckBox.setChecked(not self.ui.refineCheckBox.checked)),
                          ("Escape", self.onCancelPrompt), ("Ctrl+Z", self.onUndoPrompt)):
            shortcut = qt.QShortcut(qt.QKeySequence(key), self.parent)
            shortcut.activated.connect(slot)
            self.shortcuts.append(shortcut)
        self.updateButtons()

    def cleanup(self):
        self.trainTimer.stop()
        self.promptTimer.stop()
        self.removeObservers()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    # -- settings ----------------------------------------------------------------------------------------

    def loadSettings(self):
        store = qt.QSettings()
        stored = {}
        for key in Settings.KEYS:
            value = store.value(f"{SETTINGS_GROUP}/{key}")
            if value is not None:
                stored[key] = value
        try:
            self.settings = Settings.from_dict(stored)
        except LabelZooLibError as e:
            logger.warning("LabelZoo settings reset to defaults: %s", e)
            self.settings = Settings()
        self.ui.serverComboBox.clear()
        self.ui.serverComboBox.addItems(self.settings.server_history or [self.settings.server_url])
        self.ui.serverComboBox.setCurrentText(self.settings.server_url)
        self.ui.autoNextSampleCheckBox.setChecked(self.settings.auto_next_sample)
        self.ui.autoSegmentCheckBox.setChecked(self.settings.auto_segment)
        self.ui.autoTrainCheckBox.setChecked(self.settings.auto_train)
        self.ui.verifyTlsCheckBox.setChecked(self.settings.verify_tls)
        self.ui.mergeModeComboBox.setCurrentText(self.settings.merge_mode)

    def saveSettings(self, *_):
        self.settings.auto_next_sample = self.ui.autoNextSampleCheckBox.checked
        self.settings.auto_segment = self.ui.autoSegmentCheckBox.checked
        self.settings.auto_train = self.ui.autoTrainCheckBox.checked
        self.settings.verify_tls = self.ui.verifyTlsCheckBox.checked
        self.settings.merge_mode = self.ui.mergeModeComboBox.currentText or "replace"
        store = qt.QSettings()
        for key, value in self.settings.to_dict().items():
            store.setValue(f"{SETTINGS_GROUP}/{key}", ";".join(value) if isinstance(value, list) else value)

    # -- widgets from the session ------------------------------------------------------------------------

    def updateButtons(self):
        allowed = self.session.allowed
        self.ui.nextSampleButton.enabled = allowed("next_sample") or self.session.dirty
        self.ui.segmentButton.enabled = allowed("infer")
        self.ui.submitButton.enabled = allowed("submit")
        self.ui.discardButton.enabled = self.session.dirty
        self.ui.uploadButton.enabled = self.session.connected
        self.ui.trainButton.enabled = allowed("train")
        self.ui.stopTrainButton.enabled = allowed("stop_train")
        interactive = self.interactiveModel() is not None and self.session.image_id is not None
        for button in (self.ui.foregroundPointButton, self.ui.backgroundPointButton, self.ui.boxButton,
                       self.ui.scribbleButton, self.ui.backgroundScribbleButton, self.ui.lassoButton,
                       self.ui.undoPromptButton, self.ui.refineCheckBox):
            button.enabled = interactive and self.pending is None
        self.ui.finishPromptButton.enabled = self.shapeNode is not None and self.pending is None
        self.ui.segmentButton.enabled = allowed("infer") and self.pending is None
        self.ui.cancelPromptButton.enabled = self.pending is not None

    def showSessionInfo(self):
        info = self.session.info
        self.ui.appLabel.setText(f"{info.get('name', '?')} {info.get('version', '')}".strip())
        labelled, total = self.session.progress()
        self.ui.labelledProgressBar.setMaximum(max(total, 1))
        self.ui.labelledProgressBar.setValue(labelled)
        self._fillCombo(self.ui.strategyComboBox, self.session.strategies, self.session.strategy)
        self._fillCombo(self.ui.modelComboBox, self.session.all_models, self.session.model)
        self.showModel()

    @staticmethod
    def _fillCombo(combo, items, current):
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(items)
        if current:
            combo.setCurrentText(current)
        combo.blockSignals(False)

    def showModel(self):
        model = self.session.model
        self.ui.modelStatusLabel.setText(self.session.model_status(model) if model else "no model on the server")
        table = self.ui.modelOptionsTable
        table.setRowCount(0)
        if not model or model not in self.session.models:
            return
        for row, option in enumerate(model_options(self.session.info, model)):
            table.insertRow(row)
            nameItem = qt.QTableWidgetItem(option.name)
            nameItem.setFlags(qt.Qt.ItemIsEnabled)
            table.setItem(row, 0, nameItem)
            if option.kind == "choice":
                combo = qt.QComboBox()
                combo.addItems(list(option.choices))
                table.setCellWidget(row, 1, combo)
            elif option.kind == "bool":
                box = qt.QCheckBox()
                box.setChecked(bool(option.default))
                table.setCellWidget(row, 1, box)
            else:
                table.setItem(row, 1, qt.QTableWidgetItem(str(option.default)))

    def typedOptions(self):
        """The option values the annotator changed in the table, parsed by the Lib."""
        model = self.session.model
        options = model_options(self.session.info, model)
        typed = {}
        for row, option in enumerate(options):
            widget = self.ui.modelOptionsTable.cellWidget(row, 1)
            if isinstance(widget, qt.QCheckBox):
                value = widget.checked
            elif widget is not None:
                value = widget.currentText
            else:
                value = self.ui.modelOptionsTable.item(row, 1).text()
            if str(value) != str(option.default):
                typed[option.name] = value
        return option_values(options, typed)

    # -- slots -------------------------------------------------------------------------------------------

    @reported
    def onConnect(self):
        url = self.ui.serverComboBox.currentText
        token = self.ui.authTokenLineEdit.text.strip() or None
        client = LabelZooClient(url, token=token, verify=self.ui.verifyTlsCheckBox.checked,
                                client_id=self.settings.annotator)
        if not token and client.auth_enabled():
            user = qt.QInputDialog.getText(slicer.util.mainWindow(), "LabelZoo login", "User name:")
            password = qt.QInputDialog.getText(slicer.util.mainWindow(), "LabelZoo login", "Password:",
                                               qt.QLineEdit.Password)
            client.login(user, password)
        info = client.info()
        self.session.connect(client.server_url, info)
        self.client = client
        self.settings.remember_server(client.server_url)
        self._fillCombo(self.ui.serverComboBox, self.settings.server_history, client.server_url)
        self.saveSettings()
        self.showSessionInfo()
        self.onTrainTimer()
        self.ui.statusLabel.setText(f"connected to {client.server_url}")

    def onModelChanged(self, name):
        if name:
            try:
                self.session.select_model(name)
                self.showModel()
            except LabelZooLibError as e:
                self.ui.statusLabel.setText(str(e))
        self.updateButtons()

    def onStrategyChanged(self, name):
        if name:
            try:
                self.session.select_strategy(name)
            except LabelZooLibError as e:
                self.ui.statusLabel.setText(str(e))

    def _confirmDiscard(self):
        """Ask before dropping unsaved edits; returns whether they may be dropped."""
        if not self.session.dirty:
            return False
        return slicer.util.confirmYesNoDisplay(
            f"The segmentation of {self.session.image_id} has unsaved edits. Discard them?", windowTitle="LabelZoo")

    @reported
    def onNextSample(self):
        discard = self._confirmDiscard()
        if self.session.dirty and not discard:
            return
        self.session.check("next_sample", discard=discard)
        strategy = self.session.strategy
        choice = sample_choice(self.client.next_sample(strategy), strategy)
        path = self.client.download_image(choice.image_id, self.tmpdir)
        self.openVolume(self.logic.loadImage(path, choice.image_id))
        self.session.open_image(choice.image_id, choice, discard=discard)
        team = image_team(self.client.annotations(choice.image_id), self.settings.annotator)
        self.ui.sampleInfoLabel.setText(f"{choice.describe()}\n{team.describe()}")
        if self.ui.autoSegmentCheckBox.checked and self.session.allowed("infer"):
            self.onSegment()

    def openVolume(self, volumeNode):
        """Show a new image with an empty segmentation in the embedded Segment Editor."""
        if self.segmentationNode is not None:
            self.removeObservers(self.onSegmentationModified)
            slicer.mrmlScene.RemoveNode(self.segmentationNode)
        if self.volumeNode is not None and self.volumeNode is not volumeNode:
            slicer.mrmlScene.RemoveNode(self.volumeNode)
        self.volumeNode = volumeNode
        self.segmentationNode = self.logic.newSegmentation(volumeNode)
        editor = self.ui.embeddedSegmentEditorWidget
        editor.setSegmentationNode(self.segmentationNode)
        if hasattr(editor, "setSourceVolumeNode"):
            editor.setSourceVolumeNode(volumeNode)
        else:  # Slicer < 5.2
            editor.setMasterVolumeNode(volumeNode)
        segmentation = self.segmentationNode.GetSegmentation()
        for event in (slicer.vtkSegmentation.SegmentModified, slicer.vtkSegmentation.SegmentAdded,
                      slicer.vtkSegmentation.SegmentRemoved):
            self.addObserver(segmentation, event, self.onSegmentationModified)

    def onSegmentationModified(self, caller=None, event=None):
        if self._updatingSegmentation or self.session.image_id is None:
            return
        self.session.edited(has_label=self.segmentationNode.GetSegmentation().GetNumberOfSegments() > 0)
        self.updateButtons()

    @reported
    def onSegment(self):
        """Automatic segmentation, requested off the UI thread; :meth:`applySegmentation` merges the answer."""
        image_id, model = self.session.begin_infer()
        call = BackgroundCall(self.client.infer, model, image_id, params=self.typedOptions(), dest_dir=self.tmpdir,
                              what=f"{model} segmenting {image_id}")
        self.startBackground(call, lambda result: self.applySegmentation(result, image_id, model))

    def applySegmentation(self, result, image_id, model):
        if self.session.image_id != image_id:
            return  # another image was opened meanwhile: this answer is stale
        if result.label_path is None:
            raise LabelZooLibError(f"model {model!r} returned no label map for {image_id}: {result.params}")
        model_labels = self.session.info["models"][model].get("labels") or result.params.get("label_names")
        self._updatingSegmentation = True
        try:
            current = self.logic.currentLabelmap(self.segmentationNode, self.volumeNode, self.session.labels)
            mapping = self.session.segmentation_received(model_labels)
            self.logic.applyLabelmap(result.label_path, current, mapping, self.ui.mergeModeComboBox.currentText,
                                     self.segmentationNode, self.volumeNode, self.session.labels)
        finally:
            self._updatingSegmentation = False
        self.ui.statusLabel.setText(f"{model} segmented {image_id}: correct it, then Submit label")

    # -- interactive prompts (LabelZooLib.prompts holds the logic; the request runs off the UI thread) ------------

    def interactiveModel(self):
        """The selected model when it takes prompts (MONAI Label type ``deepedit``), else ``None``."""
        model = self.ui.modelComboBox.currentText
        models = (self.session.info or {}).get("models", {}) if self.session.connected else {}
        return model if models.get(model, {}).get("type") == "deepedit" else None

    def selectedSegmentName(self):
        segmentId = self.logic.segmentEditorNode().GetSelectedSegmentID()
        if not segmentId or self.segmentationNode is None:
            raise LabelZooLibError("select a segment in the Segment Editor first (its name is the label prompted)")
        return self.segmentationNode.GetSegmentation().GetSegment(segmentId).GetName()

    @reported
    def startPrompt(self, kind):
        """Enter point placement; the placed point becomes a prompt of the selected segment."""
        if self.interactiveModel() is None or self.pending is not None:
            return
        self.selectedSegmentName()
        if self.promptNode is None or slicer.mrmlScene.GetNodeByID(self.promptNode.GetID()) is None:
            self.promptNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "LabelZoo prompts")
            self.addObserver(self.promptNode, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent, self.onPromptPlaced)
        self.promptKind, self.boxCorner = kind, None
        slicer.modules.markups.logic().SetActiveList(self.promptNode)
        slicer.modules.markups.logic().StartPlaceMode(False)
        self.ui.promptStatusLabel.setText(f"place a {kind} point" + (" (first corner)" if kind == "box" else ""))

    def toIJK(self, ras):
        rasToIjk = vtk.vtkMatrix4x4()
        self.volumeNode.GetRASToIJKMatrix(rasToIjk)
        return rasToIjk.MultiplyPoint([*ras, 1.0])[:3]

    def pointIJK(self, index):
        ras = [0.0, 0.0, 0.0]
        self.promptNode.GetNthControlPointPositionWorld(index, ras)
        return [int(round(c)) for c in self.toIJK(ras)]

    @reported
    def onPromptPlaced(self, caller=None, event=None):
        if self.promptKind is None:
            return
        point = self.pointIJK(self.promptNode.GetNumberOfControlPoints() - 1)
        if self.promptKind == "box" and self.boxCorner is None:
            self.boxCorner = point
            slicer.modules.markups.logic().StartPlaceMode(False)
            self.ui.promptStatusLabel.setText("place the opposite corner of the box")
            return
        segment = self.selectedSegmentName()
        points = [self.boxCorner, point] if self.promptKind == "box" else [point]
        self.prompts.add(segment, self.promptKind, points)
        self.placed.setdefault(segment, []).append((self.promptNode, 2 if self.promptKind == "box" else 1))
        self.promptKind, self.boxCorner = None, None
        self.sendPrompts(segment)

    @reported
    def startShape(self, kind, background=False):
        """Draw a scribble (open curve) or a lasso (closed curve on one slice); Finish (Enter) sends it."""
        if self.interactiveModel() is None or self.pending is not None:
            return
        self.selectedSegmentName()
        self.discardShape()
        cls = "vtkMRMLMarkupsClosedCurveNode" if kind == "lasso" else "vtkMRMLMarkupsCurveNode"
        self.shapeNode = slicer.mrmlScene.AddNewNodeByClass(cls, f"LabelZoo {kind}")
        self.shapeNode.SetAttribute("LabelZoo.kind", kind)
        self.shapeNode.SetAttribute("LabelZoo.background", "1" if background else "0")
        slicer.modules.markups.logic().SetActiveList(self.shapeNode)
        slicer.modules.markups.logic().StartPlaceMode(True)  # persistent: click along the stroke / contour
        what = "background stroke" if background else ("contour on one slice" if kind == "lasso" else "stroke")
        self.ui.promptStatusLabel.setText(f"click along the {what}, then Finish (Enter)")
        self.updateButtons()

    def discardShape(self):
        if self.shapeNode is not None and slicer.mrmlScene.GetNodeByID(self.shapeNode.GetID()) is not None:
            slicer.mrmlScene.RemoveNode(self.shapeNode)
        self.shapeNode = None

    @reported
    def onFinishShape(self):
        node, self.shapeNode = self.shapeNode, None
        if node is None:
            return
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        interaction.SetCurrentInteractionMode(interaction.ViewTransform)
        kind = node.GetAttribute("LabelZoo.kind")
        background = node.GetAttribute("LabelZoo.background") == "1"
        segment = self.selectedSegmentName()
        try:
            if kind == "lasso":
                ras = []
                for i in range(node.GetNumberOfControlPoints()):
                    point = [0.0, 0.0, 0.0]
                    node.GetNthControlPointPositionWorld(i, point)
                    ras.append(point)
                points, axis = lasso_contour([self.toIJK(p) for p in ras])
                self.prompts.add(segment, "lasso", points, axis=axis, background=background)
            else:
                curve = node.GetCurvePointsWorld()  # the interpolated curve, not only the clicked points
                ras = [curve.GetPoint(i) for i in range(curve.GetNumberOfPoints())] if curve else []
                self.prompts.add(segment, "scribble", stroke_voxels([self.toIJK(p) for p in ras]),
                                 background=background)
        except LabelZooLibError:
            slicer.mrmlScene.RemoveNode(node)
            raise
        self.placed.setdefault(segment, []).append((node, None))
        self.sendPrompts(segment)

    @reported
    def onRefineToggled(self, checked):
        segment = self.selectedSegmentName()
        self.prompts.set_refine(segment, checked)
        self.ui.promptStatusLabel.setText(f"{segment}: the next prompt " + (
            "refines the current mask" if checked else "starts from the image alone"))

    @reported
    def onUndoPrompt(self):
        segment = self.selectedSegmentName()
        if self.prompts.undo(segment) is None:
            return
        node, points = (self.placed.get(segment) or [(None, None)]).pop()
        if node is not None and slicer.mrmlScene.GetNodeByID(node.GetID()) is not None:
            if points is None:  # a scribble / lasso has its own node
                slicer.mrmlScene.RemoveNode(node)
            else:
                for _ in range(points):
                    node.RemoveNthControlPoint(node.GetNumberOfControlPoints() - 1)
        self.sendPrompts(segment)

    def onCancelPrompt(self):
        """Stop waiting for the request in flight (its answer is dropped) and leave any drawing."""
        if self.pending is not None:
            self.pending[0].cancel()
            slicer.app.restoreOverrideCursor()
        self.pending = None
        self.promptTimer.stop()
        self.discardShape()
        self.promptKind, self.boxCorner = None, None
        self.ui.promptStatusLabel.setText("cancelled")
        self.updateButtons()

    def startBackground(self, call, apply):
        """Run ``call`` (a LabelZooLib BackgroundCall) off the UI thread; the timer hands its answer to ``apply``
        on the UI thread. The panel shows the busy state; Cancel (Esc) drops the answer."""
        if self.pending is not None:  # one request at a time: a newer one supersedes the one in flight
            self.pending[0].cancel()
            slicer.app.restoreOverrideCursor()
        self.pending = (call.start(), apply)
        self.ui.promptStatusLabel.setText(call.busy_text())
        slicer.app.setOverrideCursor(qt.Qt.BusyCursor)
        self.promptTimer.start(PROMPT_POLL_MS)
        self.updateButtons()

    def sendPrompts(self, segment):
        """Request ``segment``'s prompts off the UI thread; only the prompt region comes back (placed by its
        geometry, no whole-volume post-processing). With "Refine current mask" the segment is uploaded as prior."""
        model = self.interactiveModel()
        value = (self.session.info["models"][model].get("labels") or {}).get(segment.strip().lower())
        if value is None:
            raise LabelZooLibError(f"model {model!r} has no label {segment!r}: name the segment as a model label")
        params = {**self.typedOptions(), **self.prompts.params(segment), "result_region": True}
        prior = None
        if "prior" in params:  # the segment as it is now, valued as the model answers it
            prior = self.logic.exportSegmentPrior(self.segmentationNode, self.volumeNode, segment, int(value),
                                                  os.path.join(self.tmpdir, "prior.nii.gz"))
        call = BackgroundCall(self.client.infer, model, self.session.image_id, params=params, label_path=prior,
                              dest_dir=self.tmpdir, what=f"{model} redrawing {segment}")
        image_id = self.session.image_id
        self.startBackground(call, lambda result: self.applyPromptAnswer(result, segment, model, int(value), image_id))

    def onPromptTimer(self):
        """Polls the request in flight (the UI stays responsive); applies its answer once it is there."""
        if self.pending is None:
            self.promptTimer.stop()
            return
        call, apply = self.pending
        if not call.done:
            self.ui.promptStatusLabel.setText(call.busy_text())
            return
        self.pending = None
        self.promptTimer.stop()
        slicer.app.restoreOverrideCursor()
        self.updateButtons()
        self.finishBackground(call, apply)

    @reported
    def finishBackground(self, call, apply):
        apply(call.result())  # re-raises the request's error here, on the UI thread

    def applyPromptAnswer(self, result, segment, model, value, image_id):
        if self.session.image_id != image_id:
            return  # another image was opened meanwhile: this answer is stale
        if result.label_path is None:
            raise LabelZooLibError(f"model {model!r} returned no label map: {result.params}")
        self._updatingSegmentation = True
        try:
            self.logic.applySegment(result.label_path, value, segment, self.segmentationNode, self.volumeNode)
        finally:
            self._updatingSegmentation = False
        self.session.edited(has_label=True)
        region = result.params.get("result_region")
        where = f" (region {region['min']}-{region['max']})" if region else ""
        self.ui.promptStatusLabel.setText(f"{segment}: {self.prompts.count(segment)} prompt(s) applied{where}")

    @reported
    def onSubmit(self):
        self.logic.syncTable(self.segmentationNode, self.session.labels)
        image_id, params = self.session.begin_submit()
        outside = self.session.labels_outside(self.session.model) if self.session.model else []
        if outside and not slicer.util.confirmYesNoDisplay(
                f"Model {self.session.model} does not predict {', '.join(outside)} (name or value differs): "
                "training it on this label may fail. Submit anyway?", windowTitle="LabelZoo"):
            return
        question = image_team(self.client.annotations(image_id), self.settings.annotator).replace_question()
        if question:
            if not slicer.util.confirmYesNoDisplay(question, windowTitle="LabelZoo"):
                return
            params = {**params, "replace": True}
        path = os.path.join(self.tmpdir, f"{image_id}_label.nii.gz")
        self.logic.exportLabelmap(self.segmentationNode, self.volumeNode, self.session.labels, path)
        self.client.save_label(image_id, path, params=params)
        self.session.submitted(self.client.info())
        self.showSessionInfo()
        self.ui.statusLabel.setText(f"label of {image_id} submitted")
        if self.ui.autoTrainCheckBox.checked and self.session.allowed("train"):
            self.onTrain()
        if self.ui.autoNextSampleCheckBox.checked:
            self.onNextSample()

    @reported
    def onCompare(self):
        image_id = self.session.image_id
        if self.client is None or image_id is None:
            raise LabelZooLibError("open an image first (Next sample)")
        answer = self.client.annotations(image_id)
        me = self.settings.annotator
        choices = {f"{tag} by {rec.get('annotator')}": ("tag", tag)
                   for tag, rec in (answer.get("labels") or {}).items()
                   if (tag == "final" or tag.startswith("read-") or tag == "consensus") and rec.get("annotator") != me}
        for index, version in enumerate(answer.get("versions") or []):
            choices[f"prior version {index} by {version.get('annotator')}"] = ("version", index)
        if not choices:
            raise LabelZooLibError(f"no other annotator's label of {image_id} to compare with")
        name = qt.QInputDialog.getItem(slicer.util.mainWindow(), "LabelZoo", "Compare with:", list(choices), 0, False)
        if not name:
            return
        kind, key = choices[name]
        if kind == "tag":
            path = self.client.download_label(image_id, self.tmpdir, tag=key)
        else:
            path = self.client.download_label_version(image_id, key, self.tmpdir)
        self.logic.loadReadOnlySegmentation(path, f"{image_id} {name}", self.volumeNode)

    @reported
    def onDiscard(self):
        if self._confirmDiscard():
            self._updatingSegmentation = True
            try:
                self.segmentationNode.GetSegmentation().RemoveAllSegments()
            finally:
                self._updatingSegmentation = False
            self.session.discard(cleared=True)

    @reported
    def onUpload(self):
        volumeNode = self.ui.inputVolumeSelector.currentNode() or self.volumeNode
        if volumeNode is None:
            raise LabelZooLibError("choose a volume to upload first")
        discard = self._confirmDiscard()
        if self.session.dirty and not discard:
            return
        path = os.path.join(self.tmpdir, f"{volumeNode.GetName()}.nii.gz")
        if not slicer.util.saveNode(volumeNode, path):
            raise LabelZooLibError(f"could not write {volumeNode.GetName()} to {path}")
        image_id = self.client.upload_image(path, image_id=volumeNode.GetName())
        self.openVolume(volumeNode)
        self.session.open_image(image_id, discard=discard)
        self.session.connect(self.client.server_url, self.client.info())
        self.showSessionInfo()
        self.ui.sampleInfoLabel.setText(f"{image_id} (uploaded)")

    @reported
    def onTrain(self):
        model = self.session.begin_train()
        self.client.train_start(model)
        self.session.training_update({"status": "SUBMITTED", "request": {"model": model}}, model)
        self.trainTimer.start(TRAIN_POLL_MS)
        self.showTraining()

    @reported
    def onStopTrain(self):
        self.session.begin_stop_train()
        self.client.train_stop()
        self.onTrainTimer()

    def onTrainTimer(self):
        if self.client is None:
            self.trainTimer.stop()
            return
        try:
            task = self.client.train_status()
            if task is not None and task.get("status") not in ("SUBMITTED", "RUNNING"):
                self.session.connect(self.client.server_url, self.client.info())  # fresh best metric
                self.showSessionInfo()
            self.session.training_update(task)
        except LabelZooLibError as e:
            self.ui.trainingStatusLabel.setText(str(e))
            self.trainTimer.stop()
            return
        if self.session.training.running:
            self.trainTimer.start(TRAIN_POLL_MS)
        else:
            self.trainTimer.stop()
        self.showTraining()
        self.updateButtons()

    def showTraining(self):
        status = self.session.training
        self.ui.trainingStatusLabel.setText(status.describe())
        self.ui.trainingProgressBar.setValue(status.percent or 0)


class LabelZooLogic(ScriptedLoadableModuleLogic):
    """MRML <-> numpy: loads images, reads and writes segments; the label logic itself is in the Lib."""

    def segmentEditorNode(self):
        node = slicer.mrmlScene.GetFirstNodeByName("LabelZooSegmentEditor")
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "LabelZooSegmentEditor")
        return node

    def loadImage(self, path, name):
        return slicer.util.loadVolume(str(path), {"name": name, "show": True})

    def loadReadOnlySegmentation(self, path, name, volumeNode):
        """Load a label map as a locked segmentation (shown as outlines) beside the annotator's own."""
        node = slicer.util.loadSegmentation(str(path), {"name": name})
        node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        display = node.GetDisplayNode()
        if display is not None:
            display.SetVisibility2DFill(False)
            display.SetVisibility2DOutline(True)
        node.SetAttribute("LabelZoo.ReadOnly", "true")
        if hasattr(node, "SetLocked"):
            node.SetLocked(True)
        return node

    def newSegmentation(self, volumeNode):
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volumeNode.GetName()}_segmentation")
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        return node

    def segmentMasks(self, segmentationNode, volumeNode):
        """``{segment name: boolean mask}`` on the volume's voxel grid (KJI order, as arrayFromVolume)."""
        segmentation = segmentationNode.GetSegmentation()
        masks = {}
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            name = segmentation.GetSegment(segmentId).GetName()
            masks[name] = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode) > 0
        return masks

    def syncTable(self, segmentationNode, table):
        """Give segments the annotator added in the Segment Editor a value in the table."""
        segmentation = segmentationNode.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            table.add(segmentation.GetSegment(segmentation.GetNthSegmentID(index)).GetName())

    def currentLabelmap(self, segmentationNode, volumeNode, table):
        masks = self.segmentMasks(segmentationNode, volumeNode)
        return segments_to_labelmap(masks, table) if masks else None

    def exportLabelmap(self, segmentationNode, volumeNode, table, path):
        """Write the segments as one label map with the table's values, on the volume's geometry."""
        labelmap = self.currentLabelmap(segmentationNode, volumeNode, table)
        if labelmap is None:
            raise LabelZooLibError("the segmentation has no segments to submit")
        labelNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LabelZooExport")
        try:
            labelNode.CopyOrientation(volumeNode)
            slicer.util.updateVolumeFromArray(labelNode, labelmap)
            if not slicer.util.saveNode(labelNode, str(path)):
                raise LabelZooLibError(f"could not write the label map to {path}")
        finally:
            slicer.mrmlScene.RemoveNode(labelNode)
        return path

    def exportSegmentPrior(self, segmentationNode, volumeNode, segmentName, value, path):
        """Write one segment as the label map a ``prior`` request uploads (``value`` inside), on the volume's grid."""
        segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(segmentName)
        if not segmentId:
            raise LabelZooLibError(f"no segment {segmentName!r} to refine")
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
        labelNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LabelZooPrior")
        try:
            labelNode.CopyOrientation(volumeNode)
            slicer.util.updateVolumeFromArray(labelNode, prior_labelmap(mask, value))
            if not slicer.util.saveNode(labelNode, str(path)):
                raise LabelZooLibError(f"could not write the current mask to {path}")
        finally:
            slicer.mrmlScene.RemoveNode(labelNode)
        return path

    def applyLabelmap(self, path, current, mapping, mode, segmentationNode, volumeNode, table):
        """Merge the server's label map (model values mapped to the session's) into the segments, brought onto
        the volume's grid by both IJK-to-RAS matrices (never by array shape alone)."""
        labelNode = slicer.util.loadLabelVolume(str(path), {"show": False})
        try:
            answer = slicer.util.arrayFromVolume(labelNode).transpose(2, 1, 0)  # KJI -> IJK
            src, dst = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
            labelNode.GetIJKToRASMatrix(src)
            volumeNode.GetIJKToRASMatrix(dst)
            on_grid = resample_to(answer, slicer.util.arrayFromVTKMatrix(src), slicer.util.arrayFromVTKMatrix(dst),
                                  volumeNode.GetImageData().GetDimensions())
            incoming = remap_labelmap(on_grid.transpose(2, 1, 0), mapping)  # IJK -> KJI
        finally:
            slicer.mrmlScene.RemoveNode(labelNode)
        merged = merge_labelmap(current, incoming, mode=mode)
        self.writeSegments(merged, segmentationNode, volumeNode, table)

    def applySegment(self, path, value, segmentName, segmentationNode, volumeNode):
        """Redraw one segment from the server's answer (the whole volume, or only the prompt region), placed on
        the volume's grid by the answer's own IJK-to-RAS matrix; voxels the answer does not cover stay."""
        labelNode = slicer.util.loadLabelVolume(str(path), {"show": False})
        try:
            answer = slicer.util.arrayFromVolume(labelNode).transpose(2, 1, 0)  # KJI -> IJK
            src, dst = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
            labelNode.GetIJKToRASMatrix(src)
            volumeNode.GetIJKToRASMatrix(dst)
        finally:
            slicer.mrmlScene.RemoveNode(labelNode)
        segmentation = segmentationNode.GetSegmentation()
        segmentId = segmentation.GetSegmentIdBySegmentName(segmentName)
        current = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
        merged = merge_region(current.transpose(2, 1, 0), answer, slicer.util.arrayFromVTKMatrix(src),
                              slicer.util.arrayFromVTKMatrix(dst), answer_value=value, segment_value=1)
        mask = (merged == 1).astype(np.uint8).transpose(2, 1, 0)  # IJK -> KJI
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, volumeNode)

    def writeSegments(self, labelmap, segmentationNode, volumeNode, table):
        """One segment per label of the table, named and coloured by it, filled from ``labelmap``."""
        masks = labelmap_to_segments(labelmap, table)
        segmentation = segmentationNode.GetSegmentation()
        for label in table:
            segmentId = segmentation.GetSegmentIdBySegmentName(label.name)
            mask = masks.get(label.name)
            if not segmentId:
                if mask is None:
                    continue
                segmentId = segmentation.AddEmptySegment(label.name, label.name, list(label.color))
            segmentation.GetSegment(segmentId).SetColor(*label.color)
            array = mask.astype(np.uint8) if mask is not None else np.zeros(labelmap.shape, np.uint8)
            slicer.util.updateSegmentBinaryLabelmapFromArray(array, segmentationNode, segmentId, volumeNode)


class LabelZooTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: the MRML <-> Lib round trip on a synthetic volume (no server needed)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_segments_round_trip()

    def test_segments_round_trip(self):
        self.delayDisplay("LabelZoo: segments <-> label map round trip")
        volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "case")
        slicer.util.updateVolumeFromArray(volumeNode, np.zeros((8, 9, 10), dtype=np.int16))
        volumeNode.SetSpacing(1.5, 1.5, 2.0)
        logic = LabelZooLogic()
        segmentationNode = logic.newSegmentation(volumeNode)
        table = LabelTable.from_server({"spleen": 1, "liver": 6})
        labelmap = np.zeros((8, 9, 10), dtype=np.uint8)
        labelmap[2:4, 2:5, 3:6] = 6
        labelmap[5:7, 1:3, 1:3] = 1
        logic.writeSegments(labelmap, segmentationNode, volumeNode, table)
        back = logic.currentLabelmap(segmentationNode, volumeNode, table)
        self.assertTrue(np.array_equal(back, labelmap))
        segment = segmentationNode.GetSegmentation().GetSegment(
            segmentationNode.GetSegmentation().GetSegmentIdBySegmentName("liver"))
        self.assertEqual(tuple(round(c, 4) for c in segment.GetColor()), table.get("liver").color)
        path = os.path.join(tempfile.mkdtemp(), "label.nii.gz")
        logic.exportLabelmap(segmentationNode, volumeNode, table, path)
        loaded = slicer.util.loadLabelVolume(path, {"show": False})
        self.assertTrue(np.array_equal(slicer.util.arrayFromVolume(loaded), labelmap))
        self.delayDisplay("LabelZoo: test passed")
