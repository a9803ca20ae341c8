"""LabelZooLib: the logic of the LabelZoo 3D Slicer module, in plain Python.

Nothing here imports ``slicer``, ``qt``, ``ctk`` or ``vtk``: the module ``LabelZoo.py`` moves data
between widgets / MRML nodes and these classes, and the tests run them without Slicer.

- :mod:`.client`: the HTTP client for the LabelZoo (MONAI Label) REST API.
- :mod:`.jobs`: network calls off the UI thread (:class:`BackgroundCall`, :class:`Jobs` by slot), polled by the
  module, with cancel.
- :mod:`.labels`: label table, segment <-> label-value mapping with stable colours, label-map merging.
- :mod:`.prompts`: interactive prompts per segment (points, boxes, scribbles, lassos), undo, request params,
  merging the answer by its geometry.
- :mod:`.remote`: what each button asks of the server, as one background job each (next sample, submit, upload,
  connect / login, compare), and the training-status poll (:class:`TrainingWatch`).
- :mod:`.session`: the annotation session state machine, training status, sample scores.
- :mod:`.settings`: persisted settings and per-model options.
"""

from .client import ROUTES, InferResult, LabelZooClient, normalize_server_url
from .errors import LabelZooLibError, ServerError, SessionError
from .jobs import BackgroundCall, Finished, Jobs
from .labels import (
    Label,
    LabelTable,
    labelmap_to_segments,
    merge_labelmap,
    remap_labelmap,
    segments_to_labelmap,
    stable_color,
)
from .prompts import (
    Prompt,
    PromptBook,
    lasso_contour,
    merge_region,
    merge_segment,
    prior_labelmap,
    resample_region,
    resample_to,
    stroke_voxels,
)
from .remote import (
    NextSample,
    TrainingAnswer,
    TrainingWatch,
    connect_probe,
    download_for_compare,
    fetch_next_sample,
    login_info,
    poll_training,
    submit_label,
    upload_volume,
)
from .session import SampleChoice, Session, State, TrainingStatus, sample_choice, training_status
from .settings import Option, Settings, model_options, option_values
from .team import ImageTeam, compare_choices, image_team

__all__ = [
    "BackgroundCall",
    "Finished",
    "ImageTeam",
    "Jobs",
    "NextSample",
    "TrainingAnswer",
    "TrainingWatch",
    "compare_choices",
    "connect_probe",
    "download_for_compare",
    "fetch_next_sample",
    "image_team",
    "login_info",
    "poll_training",
    "submit_label",
    "upload_volume",
    "ROUTES",
    "InferResult",
    "Label",
    "LabelTable",
    "LabelZooClient",
    "LabelZooLibError",
    "Option",
    "Prompt",
    "PromptBook",
    "SampleChoice",
    "ServerError",
    "Session",
    "SessionError",
    "Settings",
    "State",
    "TrainingStatus",
    "labelmap_to_segments",
    "lasso_contour",
    "merge_labelmap",
    "merge_region",
    "merge_segment",
    "model_options",
    "normalize_server_url",
    "option_values",
    "prior_labelmap",
    "remap_labelmap",
    "resample_region",
    "resample_to",
    "sample_choice",
    "segments_to_labelmap",
    "stable_color",
    "stroke_voxels",
    "training_status",
]
