"""Persisted settings (server URL with history, automation switches) and per-model options.

The Slicer widget stores :meth:`Settings.to_dict` in ``qt.QSettings`` under ``LabelZoo/`` and reads it
back with :meth:`Settings.from_dict`; everything else here is plain data, tested without Slicer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .client import normalize_server_url
from .errors import LabelZooLibError

DEFAULT_SERVER = "http://127.0.0.1:8000"
HISTORY_LIMIT = 10

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def as_bool(name: str, value: Any) -> bool:
    """Read a boolean setting (QSettings returns ``"true"`` / ``"false"`` strings on some platforms)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise LabelZooLibError(f"setting {name!r}: {value!r} is not a boolean (expected true or false)")


def push_history(history: list[str], url: str, limit: int = HISTORY_LIMIT) -> list[str]:
    """``url`` first, then the older entries without duplicates, at most ``limit`` of them."""
    url = normalize_server_url(url)
    return [url, *[u for u in history if u != url]][:limit]


def _default_annotator() -> str:
    import getpass

    try:
        return getpass.getuser() or "annotator"
    except Exception:  # no user name in this environment
        return "annotator"


@dataclass
class Settings:
    """What the annotator's LabelZoo module remembers between Slicer sessions."""

    server_url: str = DEFAULT_SERVER
    server_history: list[str] = field(default_factory=list)
    auto_next_sample: bool = False  # fetch the next sample after a submit
    auto_segment: bool = True  # run the chosen model on each next sample
    auto_train: bool = False  # start training after a submit
    merge_mode: str = "replace"  # how a model's result merges into the current segmentation
    verify_tls: bool = True
    #: the name this annotator's labels are stored under on a server without authentication (with it: the login)
    annotator: str = field(default_factory=lambda: _default_annotator())

    KEYS = ("server_url", "server_history", "auto_next_sample", "auto_segment", "auto_train", "merge_mode",
            "verify_tls", "annotator")

    def remember_server(self, url: str) -> None:
        """Make ``url`` the current server and the first history entry."""
        self.server_history = push_history(self.server_history, url)
        self.server_url = self.server_history[0]

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.KEYS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        """Settings from stored values; missing keys take defaults, bad values raise a clear error.

        Raises:
            LabelZooLibError: naming the setting that is wrong.
        """
        from .labels import MERGE_MODES

        unknown = set(data) - set(cls.KEYS)
        if unknown:
            raise LabelZooLibError(f"unknown settings {sorted(unknown)}; expected some of {list(cls.KEYS)}")
        out = cls()
        if data.get("server_url"):
            out.server_url = normalize_server_url(str(data["server_url"]))
        history = data.get("server_history") or []
        if isinstance(history, str):
            history = [h for h in history.split(";") if h]
        out.server_history = []
        for url in reversed(list(history)):
            try:
                out.server_history = push_history(out.server_history, url)
            except LabelZooLibError:
                continue  # a broken stored entry is dropped, not fatal
        for key in ("auto_next_sample", "auto_segment", "auto_train", "verify_tls"):
            if key in data and data[key] is not None:
                setattr(out, key, as_bool(key, data[key]))
        if data.get("annotator"):
            name = str(data["annotator"]).strip()
            if not 0 < len(name) <= 100 or name[0] in "$@%":
                raise LabelZooLibError(f"setting 'annotator': {name[:40]!r} must be 1 to 100 characters, "
                                       "not starting with $, @ or %")
            out.annotator = name
        if data.get("merge_mode"):
            if data["merge_mode"] not in MERGE_MODES:
                raise LabelZooLibError(f"setting 'merge_mode': {data['merge_mode']!r} is not one of {MERGE_MODES}")
            out.merge_mode = str(data["merge_mode"])
        return out


@dataclass(frozen=True)
class Option:
    """One per-model option from the server's config: name, kind, default and, for a choice, its values."""

    name: str
    kind: str  # "bool", "int", "float", "str" or "choice"
    default: Any
    choices: tuple[str, ...] = ()

    def parse(self, text: Any) -> Any:
        """The value typed in the options table, converted to the option's kind.

        Raises:
            LabelZooLibError: naming the option and the expected kind.
        """
        try:
            if self.kind == "bool":
                return as_bool(self.name, text)
            if self.kind == "int":
                return int(str(text).strip())
            if self.kind == "float":
                return float(str(text).strip())
        except ValueError as e:
            raise LabelZooLibError(f"option {self.name!r}: {text!r} is not a valid {self.kind}") from e
        if self.kind == "choice":
            if str(text) not in self.choices:
                raise LabelZooLibError(f"option {self.name!r}: {text!r} is not one of {list(self.choices)}")
            return str(text)
        return str(text)


def model_options(info: Mapping[str, Any], model: str, section: str = "models") -> list[Option]:
    """The options ``info()[section][model]["config"]`` offers, typed from their default values.

    A list default is a choice among its items (the first is the default), as in MONAI Label's config.
    """
    entry = (info.get(section) or {}).get(model)
    if entry is None:
        offered = sorted(info.get(section) or {})
        raise LabelZooLibError(f"{section[:-1]} {model!r} is not on the server; it offers {offered}")
    options: list[Option] = []
    for name, default in sorted((entry.get("config") or {}).items()):
        if isinstance(default, bool):
            options.append(Option(name, "bool", default))
        elif isinstance(default, int):
            options.append(Option(name, "int", default))
        elif isinstance(default, float):
            options.append(Option(name, "float", default))
        elif isinstance(default, (list, tuple)):
            choices = tuple(str(c) for c in default)
            options.append(Option(name, "choice", choices[0] if choices else "", choices))
        elif isinstance(default, dict):
            continue  # nested config is not editable in a table
        else:
            options.append(Option(name, "str", "" if default is None else str(default)))
    return options


def option_values(options: list[Option], typed: Mapping[str, Any]) -> dict[str, Any]:
    """Parse the values typed for ``options``; options left untouched are not sent (server defaults apply)."""
    by_name = {o.name: o for o in options}
    unknown = set(typed) - set(by_name)
    if unknown:
        raise LabelZooLibError(f"unknown options {sorted(unknown)}; this model takes {sorted(by_name)}")
    return {name: by_name[name].parse(value) for name, value in typed.items()}
