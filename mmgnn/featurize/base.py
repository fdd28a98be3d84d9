"""What every featurizer provides: settings that rebuild it, per-item decoding with checks,
batched computing; and the registry that turns recorded settings back into featurizers.

A featurizer's *settings* are exactly its constructor's ordinary arguments (every one changes
the output) plus ``kind`` (``text``, ``image`` or ``audio``: what a manifest cell holds) and
``encoder`` (which featurizer of that kind). Run-time choices that do not change the output
(the torch ``device``, an already loaded model) are keyword-only constructor arguments and are
not recorded. So ``featurizer_from_settings(f.settings())`` rebuilds ``f``::

    >>> from mmgnn.featurize import ImageFeaturizer, featurizer_from_settings
    >>> f = ImageFeaturizer(size=16, patch=4)
    >>> f.settings()
    {'kind': 'image', 'encoder': 'patches', 'size': 16, 'patch': 4, 'mode': 'grey'}
    >>> featurizer_from_settings(f.settings()).settings() == f.settings()
    True
"""
from __future__ import annotations

import inspect
import typing
from abc import ABC, abstractmethod
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

import numpy as np

_REGISTRY: dict[tuple[str, str], type["Featurizer"]] = {}


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (``"absent"`` for one not installed)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


class Featurizer(ABC):
    """Raw values of one modality kind -> node arrays in the dataset folder contract.

    A cell's content (the text's UTF-8 bytes, or a file's bytes) goes through
    :meth:`decode` one item at a time (all checks of bad input happen there, raising
    :class:`~mmgnn.featurize.manifest.ItemError`), then through :meth:`compute` a batch at a
    time. Outputs depend only on the content and :meth:`settings` (and the library and weight
    versions of :meth:`versions`), which key the item cache.

    A subclass sets ``kind`` and ``encoder`` (registering it for :func:`featurizer_from_settings`)
    and stores each ordinary constructor argument under an attribute of the same name.
    """

    kind: ClassVar[str]  # what a manifest cell holds: text, image or audio
    encoder: ClassVar[str]  # the featurizer's name among its kind's (--<kind>-encoder)
    reads_files: ClassVar[bool]  # True: a cell names a file; False: a cell holds the value itself

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls) and "encoder" in cls.__dict__:
            _REGISTRY[(cls.kind, cls.encoder)] = cls

    @classmethod
    def setting_names(cls) -> list[str]:
        """The constructor's ordinary (not keyword-only) arguments: what :meth:`settings` holds."""
        return [p.name for p in inspect.signature(cls.__init__).parameters.values()
                if p.name != "self" and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each setting's default value (``inspect.Parameter.empty`` when it has none)."""
        parameters = inspect.signature(cls.__init__).parameters
        return {name: parameters[name].default for name in cls.setting_names()}

    @classmethod
    def setting_types(cls) -> dict[str, Any]:
        """Each setting's annotated type (resolved)."""
        hints = typing.get_type_hints(cls.__init__)
        return {name: hints.get(name, str) for name in cls.setting_names()}

    def settings(self) -> dict[str, Any]:
        """``kind``, ``encoder`` and every constructor argument that changes the output (JSON-serialisable)."""
        values = {name: getattr(self, name) for name in self.setting_names()}
        return {"kind": self.kind, "encoder": self.encoder,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}

    @classmethod
    def from_settings(cls, settings: dict[str, Any], **runtime: Any) -> "Featurizer":
        """The featurizer that :meth:`settings` describes (``runtime``: keyword-only arguments
        such as ``device``); the settings' ``kind``/``encoder`` must name this class."""
        settings = dict(settings)
        kind, encoder = settings.pop("kind", cls.kind), settings.pop("encoder", cls.encoder)
        if (kind, encoder) != (cls.kind, cls.encoder):
            raise ValueError(f"settings of a {kind}/{encoder} featurizer given to {cls.__name__} "
                             f"({cls.kind}/{cls.encoder})")
        unknown = sorted(set(settings) - set(cls.setting_names()))
        if unknown:
            raise ValueError(f"{kind} encoder {encoder!r} has no setting(s) {unknown}; "
                             f"its settings are {cls.setting_names()}")
        types = cls.setting_types()
        values = {k: tuple(v) if isinstance(v, list) and typing.get_origin(types[k]) is tuple else v
                  for k, v in settings.items()}
        return cls(**values, **runtime)

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the libraries (and weights) that produce the output."""

    @abstractmethod
    def decode(self, content: bytes) -> Any:
        """One item's content -> the input of :meth:`compute`; raises ``ItemError`` if bad."""

    @abstractmethod
    def compute(self, decoded: list[Any]) -> list[dict[str, np.ndarray]]:
        """A batch of decoded items -> per item ``x`` float32 ``[n, d]``, ``pos`` float32
        ``[n, k]`` and optional ``ids`` int64 ``[n]``."""


def registered() -> dict[tuple[str, str], type[Featurizer]]:
    """(kind, encoder) -> featurizer class, for every featurizer defined so far."""
    import mmgnn.featurize  # noqa: F401  (defines every built-in featurizer)

    return dict(_REGISTRY)


def featurizer_class(kind: str, encoder: str) -> type[Featurizer]:
    """The class registered for ``kind``/``encoder``; a clear error naming the known ones."""
    known = registered()
    if (kind, encoder) not in known:
        names = sorted(e for k, e in known if k == kind)
        raise ValueError(f"unknown {kind} encoder {encoder!r}; known: {names}")
    return known[(kind, encoder)]


# Settings written by mmgnn.featurize before featurizers recorded kind/encoder: keys that were
# fixed by the code (not constructor arguments), with the only value they ever had.
_LEGACY_FIXED = {
    ("text", "minilm"): {"model": "sentence-transformers/all-MiniLM-L6-v2", "special_tokens": True},
    ("image", "patches"): {"resample": "bilinear"},
    ("audio", "logmel"): {"mel_scale": "htk", "power": 2.0, "center": True},
}
_DEFAULT_ENCODER = {"text": "minilm", "image": "patches", "audio": "logmel"}


def featurizer_from_settings(settings: dict[str, Any], kind: str | None = None, **runtime: Any) -> Featurizer:
    """Rebuild a featurizer from its :meth:`Featurizer.settings` (as in ``featurize.json``).

    Args:
        settings: ``kind``, ``encoder`` and the constructor arguments. Settings recorded before
            ``kind``/``encoder`` were (with fixed keys such as ``resample``) are read too.
        kind: the kind when ``settings`` lacks it (older ``featurize.json`` kept it beside).
        runtime: keyword-only constructor arguments (``device=...``) for classes taking them.
    """
    settings = dict(settings)
    kind = settings.pop("kind", kind)
    if kind is None:
        raise ValueError(f"featurizer settings {settings} name no kind (text, image or audio)")
    encoder = settings.pop("encoder", _DEFAULT_ENCODER.get(kind, ""))
    for key, fixed in _LEGACY_FIXED.get((kind, encoder), {}).items():
        if key in settings and settings.pop(key) != fixed:
            raise ValueError(f"{kind} featurizer settings with {key}={settings.get(key)!r}: this "
                             f"version only computes {key}={fixed!r}")
    cls = featurizer_class(kind, encoder)
    accepted = set(inspect.signature(cls.__init__).parameters)
    return cls.from_settings({"kind": kind, "encoder": encoder, **settings},
                             **{k: v for k, v in runtime.items() if k in accepted})
