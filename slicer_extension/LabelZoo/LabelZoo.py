"""LabelZoo: the 3D Slicer module of the LabelZoo annotation stack.

This file only moves data between Qt widgets / MRML nodes and ``LabelZooLib`` (plain Python, tested
without Slicer): the HTTP client, the label table and label-map merging, the session state machine and
the settings all live there.

No network call runs on the Qt thread: each one (or a chain of them, ``LabelZooLib.remote``) runs as a
``LabelZooLib.BackgroundCall`` in a ``LabelZooLib.Jobs`` slot, polled by ``jobTimer``; its answer is applied
on the Qt thread, where dialogs are shown between two background steps.
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
    Jobs,
    LabelTable,
    LabelZooClient,
    LabelZooLibError,
    PromptBook,
    Session,
    SessionError,
    Settings,
    TrainingWatch,
    compare_choices,
    connect_probe,
    download_for_compare,
    fetch_next_sample,
    labelmap_to_segments,
    lasso_contour,
    login_info,
    merge_labelmap,
    merge_region,
    model_options,
    option_values,
    prior_labelmap,
    remap_labelmap,
    resample_to,
    segments_to_labelmap,
    stroke_voxels,
    submit_label,
    upload_volume,
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
TRAIN_POLL_MS = 5000  # pause between two training-status polls (the next starts once the last one answered)
JOB_POLL_MS = 100  # how often the timer looks for finished background calls

# Jobs slots: one request of each kind in flight at most.
REQUEST = "request"  # the annotator's work: connect, next sample, segment, prompts, submit, upload, compare
TRAIN = "train"  # starting / stopping training (runs beside the image work)
STATUS = "training status"  # the training-status poll (never stacks: a poll is skipped while one is in flight)


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
        self.trainTimer = qt.QTimer()  # single-shot: restarted by each answered poll, so polls never stack
        self.jobs = Jobs()  # the network calls in flight, off the Qt thread
        self.jobTimer = qt.QTimer()
        self.trainingWatch = TrainingWatch()
        self.busyLabel = None  # where the REQUEST job's busy text goes (status line or prompt status)
        self.busyCursor = False
        self.editCount = 0  # segmentation edits so far (an edit during a submit keeps the label unsaved)
        self.prompts = PromptBook()
        self.promptNode = None
        self.promptKind = None
        self.boxCorner = None
        self.shapeNode = None  # the scribble (curve) or lasso (closed curve) being drawn
        self.placed = {}  # segment -> [markup node or (point node, None)] per prompt, for undo
        self.promptCall = None  # the prompt request in flight (a newer prompt supersedes it)
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
        self.trainTimer.setSingleShot(True)
        self.trainTimer.timeout.connect(self.onTrainTimer)
        self.jobTimer.timeout.connect(self.onJobTimer)
        self.ui.cancelRequestButton.clicked.connect(self.onCancelRequest)
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
        self.jobs.cancel_all()  # answers still coming are dropped
        self.trainTimer.stop()
        self.jobTimer.stop()
        self.setBusyCursor(False)
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
        """Enable what the session allows; while a request runs, what would start a conflicting one is off."""
        allowed = self.session.allowed
        idle = not self.jobs.busy(REQUEST)
        trainIdle = not self.jobs.busy(TRAIN)
        self.ui.connectButton.enabled = idle
        self.ui.nextSampleButton.enabled = (allowed("next_sample") or self.session.dirty) and idle
        self.ui.segmentButton.enabled = allowed("infer") and idle
        self.ui.submitButton.enabled = allowed("submit") and idle
        self.ui.discardButton.enabled = self.session.dirty and idle
        self.ui.uploadButton.enabled = self.session.connected and idle
        self.compareButton.enabled = idle
        self.ui.trainButton.enabled = allowed("train") and trainIdle
        self.ui.stopTrainButton.enabled = allowed("stop_train") and trainIdle
        interactive = self.interactiveModel() is not None and self.session.image_id is not None
        for button in (self.ui.foregroundPointButton, self.ui.backgroundPointButton, self.ui.boxButton,
                       self.ui.scribbleButton, self.ui.backgroundScribbleButton, self.ui.lassoButton,
                       self.ui.undoPromptButton, self.ui.refineCheckBox):
            button.enabled = interactive and idle
        self.ui.finishPromptButton.enabled = self.shapeNode is not None and idle
        self.ui.cancelPromptButton.enabled = not idle
        self.ui.cancelRequestButton.enabled = not idle

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

    # -- background requests (LabelZooLib.Jobs; the answers are applied here, on the Qt thread) ----------------

    def startJob(self, slot, call, onDone, onError=None, ifBusy="raise", busyLabel=None):
        """Run ``call`` (a LabelZooLib BackgroundCall, not started) off the Qt thread in ``slot``; ``jobTimer``
        hands its answer to ``onDone`` (its LabelZooLibError to ``onError``, else to a dialog) on the Qt thread.
        A REQUEST job shows the busy cursor and its busy text in ``busyLabel`` (the status line by default)
        and enables Cancel. Returns the started call, or ``None`` when ``ifBusy="skip"`` skipped it."""
        started = self.jobs.start(slot, call, onDone, onError, if_busy=ifBusy)
        if started is None:
            return None
        if slot == REQUEST:
            self.busyLabel = busyLabel or self.ui.statusLabel
        if not self.jobTimer.isActive():
            self.jobTimer.start(JOB_POLL_MS)
        self.showBusy()
        self.updateButtons()
        return started

    def setBusyCursor(self, busy):
        if busy and not self.busyCursor:
            slicer.app.setOverrideCursor(qt.Qt.BusyCursor)
        elif not busy and self.busyCursor:
            slicer.app.restoreOverrideCursor()
        self.busyCursor = busy

    def showBusy(self):
        """Busy cursor and texts from the jobs in flight (the status poll stays silent)."""
        self.setBusyCursor(self.jobs.busy(REQUEST))
        if self.jobs.busy(REQUEST) and self.busyLabel is not None:
            self.busyLabel.setText(self.jobs.busy_text(REQUEST))
        if self.jobs.busy(TRAIN):
            self.ui.trainingStatusLabel.setText(self.jobs.busy_text(TRAIN))

    def onJobTimer(self):
        """Collects finished calls and applies their answers (the Qt thread never waits for the network)."""
        finished = self.jobs.poll()
        if not self.jobs.busy():
            self.jobTimer.stop()
        for job in finished:  # no stale "... 3.2 s" once it answered; the answer (or its error) says what happened
            if job.slot == REQUEST and self.busyLabel is not None and not self.jobs.busy(REQUEST):
                self.busyLabel.setText("")
            elif job.slot == TRAIN:
                self.showTraining()
        self.showBusy()
        if finished:
            self.updateButtons()
        for job in finished:
            self.deliver(job)

    @reported
    def deliver(self, job):
        job.deliver()  # onDone(answer); a request's error is raised here, on the Qt thread, and shown by @reported

    def onCancelRequest(self):
        """Stop waiting for the request in flight: its answer is dropped (the server may still finish it)."""
        call = self.jobs.cancel(REQUEST)
        self.promptCall = None
        if not self.jobs.busy():
            self.jobTimer.stop()
        self.showBusy()
        if call is not None:
            self.ui.statusLabel.setText(f"cancelled: {call.what} (its answer will be ignored; the server may still "
                                        "finish it)")
        self.updateButtons()

    # -- slots -------------------------------------------------------------------------------------------

    @reported
    def onConnect(self):
        """Connect in the background: /info/ (after a login, when the server asks for one)."""
        url = self.ui.serverComboBox.currentText
        token = self.ui.authTokenLineEdit.text.strip() or None
        client = LabelZooClient(url, token=token, verify=self.ui.verifyTlsCheckBox.checked,
                                client_id=self.settings.annotator)
        self.startJob(REQUEST, BackgroundCall(connect_probe, client, what=f"connecting to {client.server_url}"),
                      lambda info: self.onConnectAnswer(client, info))

    def onConnectAnswer(self, client, info):
        if info is None:  # the server asks for a login: the dialogs run here, then the login runs in the background
            user = qt.QInputDialog.getText(slicer.util.mainWindow(), "LabelZoo login", "User name:")
            password = qt.QInputDialog.getText(slicer.util.mainWindow(), "LabelZoo login", "Password:",
                                               qt.QLineEdit.Password)
            self.startJob(REQUEST, BackgroundCall(login_info, client, user, password,
                                                  what=f"logging in to {client.server_url}"),
                          lambda answer: self.onConnected(client, answer))
            return
        self.onConnected(client, info)

    def onConnected(self, client, info):
        self.session.connect(client.server_url, info)
        self.client = client
        self.settings.remember_server(client.server_url)
        self._fillCombo(self.ui.serverComboBox, self.settings.server_history, client.server_url)
        self.saveSettings()
        self.showSessionInfo()
        self.jobs.cancel(STATUS)  # a poll of the previous server is no longer wanted
        self.trainingWatch.reset()
        self.pollTraining()
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
        call = BackgroundCall(fetch_next_sample, self.client, strategy, self.tmpdir, self.settings.annotator,
                              what=f"fetching the next sample ({strategy})")
        self.startJob(REQUEST, call, lambda sample: self.openSample(sample, discard))

    def openSample(self, sample, discard):
        """The next sample arrived (chosen, downloaded, its annotators read): show it, auto-segment if set."""
        self.session.check("next_sample", discard=discard)  # edits made while it downloaded are not lost
        choice = sample.choice
        self.openVolume(self.logic.loadImage(sample.image_path, choice.image_id))
        self.session.open_image(choice.image_id, choice, discard=discard)
        self.ui.sampleInfoLabel.setText(f"{choice.describe()}\n{sample.team.describe()}")
        self.ui.statusLabel.setText(f"{choice.image_id} opened")
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
        self.editCount += 1
        self.session.edited(has_label=self.segmentationNode.GetSegmentation().GetNumberOfSegments() > 0)
        self.updateButtons()

    @reported
    def onSegment(self):
        """Automatic segmentation, requested off the UI thread; :meth:`applySegmentation` merges the answer."""
        image_id, model = self.session.begin_infer()
        call = BackgroundCall(self.client.infer, model, image_id, params=self.typedOptions(), dest_dir=self.tmpdir,
                              what=f"{model} segmenting {image_id}")
        self.startJob(REQUEST, call, lambda result: self.applySegmentation(result, image_id, model))

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
        if self.interactiveModel() is None or self.jobs.busy(REQUEST):
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

    def promptBlocked(self):
        """Raise when a request other than a prompt runs: a prompt waits for it (a newer prompt supersedes an older)."""
        running = self.jobs.running(REQUEST)
        if running is not None and running is not self.promptCall:
            raise LabelZooLibError(f"{running.what} is still running: wait for it (or press Cancel), then prompt again")

    @reported
    def onPromptPlaced(self, caller=None, event=None):
        if self.promptKind is None:
            return
        try:
            self.promptBlocked()
        except LabelZooLibError:  # take the point(s) of this prompt back off the view, once this event is over
            node, count = self.promptNode, 2 if self.boxCorner is not None else 1
            qt.QTimer.singleShot(0, lambda: self.removeLastPoints(node, count))
            self.promptKind, self.boxCorner = None, None
            raise
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

    @staticmethod
    def removeLastPoints(node, count):
        if slicer.mrmlScene.IsNodePresent(node):
            for _ in range(min(count, node.GetNumberOfControlPoints())):
                node.RemoveNthControlPoint(node.GetNumberOfControlPoints() - 1)

    @reported
    def startShape(self, kind, background=False):
        """Draw a scribble (open curve) or a lasso (closed curve on one slice); Finish (Enter) sends it."""
        if self.interactiveModel() is None or self.jobs.busy(REQUEST):
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
            self.promptBlocked()
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
        self.promptBlocked()
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
        """Stop waiting for the request in flight (its answer is dropped) and leave any drawing (Esc)."""
        self.onCancelRequest()
        self.discardShape()
        self.promptKind, self.boxCorner = None, None
        self.ui.promptStatusLabel.setText("cancelled")
        self.updateButtons()

    def sendPrompts(self, segment):
        """Request ``segment``'s prompts off the UI thread; only the prompt region comes back (placed by its
        geometry, no whole-volume post-processing). With "Refine current mask" the segment is uploaded as prior."""
        model = self.interactiveModel()
        value = (self.session.info["models"][model].get("labels") or {}).get(segment.strip().lower())
        if value is None:
            raise LabelZooLibError(f"model {model!r} has no label {segment!r}: name the segment as a model label")
        params = {**self.typedOptions(), **self.prompts.params(segment), "result_region": True}
        answerDir = tempfile.mkdtemp(prefix="prompt-", dir=self.tmpdir)  # a superseded request cannot overwrite it
        prior = None
        if "prior" in params:  # the segment as it is now, valued as the model answers it
            prior = self.logic.exportSegmentPrior(self.segmentationNode, self.volumeNode, segment, int(value),
                                                  os.path.join(answerDir, "prior.nii.gz"))
        call = BackgroundCall(self.client.infer, model, self.session.image_id, params=params, label_path=prior,
                              dest_dir=answerDir, what=f"{model} redrawing {segment}")
        image_id = self.session.image_id
        # a newer prompt supersedes the prompt request in flight (its answer is dropped); another request is not
        supersede = self.promptCall is not None and self.jobs.running(REQUEST) is self.promptCall
        self.promptCall = self.startJob(
            REQUEST, call, lambda result: self.applyPromptAnswer(result, segment, model, int(value), image_id),
            ifBusy="replace" if supersede else "raise", busyLabel=self.ui.promptStatusLabel)

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
        """Submit in two background steps: who labelled the image (then, here, the replace question), then
        store the label and refresh /info/; afterwards auto-train and auto-next-sample as set."""
        self.logic.syncTable(self.segmentationNode, self.session.labels)
        image_id, params = self.session.begin_submit()
        outside = self.session.labels_outside(self.session.model) if self.session.model else []
        if outside and not slicer.util.confirmYesNoDisplay(
                f"Model {self.session.model} does not predict {', '.join(outside)} (name or value differs): "
                "training it on this label may fail. Submit anyway?", windowTitle="LabelZoo"):
            return
        self.startJob(REQUEST, BackgroundCall(self.client.annotations, image_id,
                                              what=f"checking who labelled {image_id}"),
                      lambda answer: self.onSubmitChecked(image_id, params, answer))

    def onSubmitChecked(self, image_id, params, annotations):
        if self.session.image_id != image_id:
            return  # another image was opened meanwhile
        question = image_team(annotations, self.settings.annotator).replace_question()
        if question:
            if not slicer.util.confirmYesNoDisplay(question, windowTitle="LabelZoo"):
                self.ui.statusLabel.setText(f"label of {image_id} not submitted")
                return
            params = {**params, "replace": True}
        self.logic.syncTable(self.segmentationNode, self.session.labels)  # segments added while it asked
        params = {**params, "label_info": self.session.labels.to_label_info(),
                  "label_names": self.session.labels.to_names()}
        path = os.path.join(self.tmpdir, f"{image_id}_label.nii.gz")
        self.logic.exportLabelmap(self.segmentationNode, self.volumeNode, self.session.labels, path)
        edits = self.editCount
        self.startJob(REQUEST, BackgroundCall(submit_label, self.client, image_id, path, params,
                                              what=f"submitting the label of {image_id}"),
                      lambda info: self.onSubmitted(image_id, info, edits))

    def onSubmitted(self, image_id, info, edits):
        self.session.submitted(info)
        if self.editCount != edits:  # edited while the label was on its way: those edits are not on the server
            self.session.edited(has_label=self.segmentationNode.GetSegmentation().GetNumberOfSegments() > 0)
        self.showSessionInfo()
        self.ui.statusLabel.setText(f"label of {image_id} submitted")
        if self.ui.autoTrainCheckBox.checked and self.session.allowed("train") and not self.jobs.busy(TRAIN):
            self.onTrain()  # its own slot: starting training runs beside the next sample
        if self.ui.autoNextSampleCheckBox.checked:
            self.onNextSample()

    @reported
    def onCompare(self):
        image_id = self.session.image_id
        if self.client is None or image_id is None:
            raise LabelZooLibError("open an image first (Next sample)")
        self.startJob(REQUEST, BackgroundCall(self.client.annotations, image_id,
                                              what=f"reading who labelled {image_id}"),
                      lambda answer: self.onCompareChoices(image_id, answer))

    def onCompareChoices(self, image_id, answer):
        if self.session.image_id != image_id:
            return
        choices = compare_choices(answer, self.settings.annotator)
        if not choices:
            raise LabelZooLibError(f"no other annotator's label of {image_id} to compare with")
        name = qt.QInputDialog.getItem(slicer.util.mainWindow(), "LabelZoo", "Compare with:", list(choices), 0, False)
        if not name:
            return
        kind, key = choices[name]
        call = BackgroundCall(download_for_compare, self.client, image_id, kind, key, self.tmpdir,
                              what=f"downloading {name}")
        self.startJob(REQUEST, call, lambda path: self.onCompareDownloaded(image_id, name, path))

    def onCompareDownloaded(self, image_id, name, path):
        if self.session.image_id != image_id:
            return  # another image was opened meanwhile
        self.logic.loadReadOnlySegmentation(path, f"{image_id} {name}", self.volumeNode)
        self.ui.statusLabel.setText(f"{name} loaded read-only")

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
        call = BackgroundCall(upload_volume, self.client, path, volumeNode.GetName(),
                              what=f"uploading {volumeNode.GetName()}")
        self.startJob(REQUEST, call, lambda answer: self.onUploaded(volumeNode, discard, *answer))

    def onUploaded(self, volumeNode, discard, image_id, info):
        if not slicer.mrmlScene.IsNodePresent(volumeNode):
            raise LabelZooLibError(f"{image_id} was uploaded, but its volume was closed meanwhile: open it with "
                                   "Next sample")
        if self.session.dirty and not discard:  # edited while it uploaded: those edits are not dropped
            raise SessionError(f"{image_id} was uploaded but not opened: the segmentation of "
                               f"{self.session.image_id} has unsaved edits; submit or discard them, then upload again")
        self.openVolume(volumeNode)
        self.session.open_image(image_id, discard=discard)
        self.session.connect(self.client.server_url, info)
        self.showSessionInfo()
        self.ui.sampleInfoLabel.setText(f"{image_id} (uploaded)")
        self.ui.statusLabel.setText(f"{image_id} uploaded")

    # -- training: start / stop in the TRAIN slot, status polled in the STATUS slot --------------------------

    @reported
    def onTrain(self):
        model = self.session.begin_train()
        client = self.client
        self.startJob(TRAIN, BackgroundCall(client.train_start, model, what=f"starting training of {model}"),
                      lambda answer: self.onTrainStarted(client, model))

    def onTrainStarted(self, client, model):
        if client is not self.client:
            return  # connected to another server meanwhile
        self.session.training_update({"status": "SUBMITTED", "request": {"model": model}}, model)
        self.trainingWatch.reset()
        self.trainTimer.start(TRAIN_POLL_MS)
        self.showTraining()

    @reported
    def onStopTrain(self):
        self.session.begin_stop_train()
        client = self.client
        self.startJob(TRAIN, BackgroundCall(client.train_stop, what="stopping training"),
                      lambda answer: self.onTrainStopped(client))

    def onTrainStopped(self, client):
        if client is not self.client:
            return
        self.trainingWatch.reset()  # a poll in flight may still say RUNNING: its answer is asked again
        self.pollTraining()

    def onTrainTimer(self):
        self.pollTraining()

    def pollTraining(self):
        """Ask the training status in the background; a poll is skipped while one is in flight, and the
        single-shot timer is only restarted by an answer, so a slow server never gets polls stacked up."""
        self.trainTimer.stop()
        if self.client is None:
            return
        client = self.client
        self.startJob(STATUS, self.trainingWatch.job(client),
                      lambda answer: self.onTrainingAnswer(client, answer),
                      lambda error: self.onTrainingFailed(client, error), ifBusy="skip")

    def onTrainingAnswer(self, client, answer):
        if client is not self.client:
            return
        if not self.trainingWatch.current(answer):  # asked before Train / Stop: ask again (none is in flight now)
            self.pollTraining()
            return
        again = self.trainingWatch.answered(answer)
        if answer.info is not None:  # the task ended: fresh best metric and model status
            self.session.connect(client.server_url, answer.info)
            self.showSessionInfo()
        self.session.training_update(answer.task)
        if again and self.session.training.running:
            self.trainTimer.start(TRAIN_POLL_MS)
        self.showTraining()

    def onTrainingFailed(self, client, error):
        """A poll failed: a line in the training status, never a dialog; ask again a few times, then stop."""
        if client is not self.client:
            return
        message, again = self.trainingWatch.failed(error, running=self.session.training.running)
        logger.warning("LabelZoo: %s", message)
        self.ui.trainingStatusLabel.setText(message)
        if again:
            self.trainTimer.start(TRAIN_POLL_MS)

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
