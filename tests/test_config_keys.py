"""Every config key is read by something (docs/config_keys.md lists each with its reader).

Every option of every group and every experiment preset is composed; each key it yields must be
a parameter of its ``_target_`` (a field of its encoding class, for the ``pe`` entries), or a row
of the page whose readers name it in their source.
"""
import importlib
import inspect
import re
from dataclasses import fields

import pytest
from hydra.utils import get_class, get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from mmgnn.config import CONF_DIR, group_options
from mmgnn.data.pe import Encoding
from test_config import compose_cfg

PAGE = CONF_DIR.parent / "docs" / "config_keys.md"
GROUPS = ("data", "graph", "pe", "gnn", "skip", "fusion", "model", "text_encoder", "loss", "optim",
          "sched", "train", "tracking", "debug")
ENCODING_ENTRIES = re.compile(r"^pe\.(default|without_pos|modalities\.[^.]+)$")
MAPPINGS = ("train.stages[].lr_scale",)  # keys whose children are names the user chooses


def documented() -> dict[str, list[str]]:
    """key -> readers, from the page's table."""
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|", PAGE.read_text(), flags=re.M)
    return {key: re.findall(r"`([^`]+)`", readers) for key, readers in rows}


def walk(node, prefix: str, out: dict[str, str]) -> None:
    """``out[key] = kind`` for every key under ``node``: ``target`` (a parameter of its node's
    ``_target_``, checked here), ``encoding`` (checked here) or ``plain`` (must be on the page)."""
    if ENCODING_ENTRIES.match(prefix) and isinstance(node, DictConfig):
        check_encoding_fields(prefix, node)
        out[prefix] = "plain" if prefix.count(".") == 1 else "encoding"
        return
    if prefix in MAPPINGS or not isinstance(node, (DictConfig, ListConfig)) or (
            isinstance(node, DictConfig) and not len(node) and prefix):
        out[prefix] = "plain"
        return
    if isinstance(node, ListConfig):
        if len(node) and isinstance(node._get_node(0), DictConfig):
            out[prefix] = "plain"
            for i in range(len(node)):
                walk(node._get_node(i), f"{prefix}[]", out)
        else:
            out[prefix] = "plain"
        return
    if "_target_" in node:
        if prefix:
            out.setdefault(prefix, "target")
        check_target_parameters(prefix, node)
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig) and "_target_" in child:
                walk(child, f"{prefix}.{key}", out)
        return
    if prefix == "graph.modalities" or prefix.startswith("pe.modalities"):
        out[prefix] = "plain"
    for key in node:
        child = node._get_node(key)
        walk(child, f"{prefix}.{key}" if prefix else str(key), out)


def check_target_parameters(prefix: str, node: DictConfig) -> None:
    target = get_object(node._target_)
    parameters = inspect.signature(target).parameters
    for key in node:
        if not str(key).startswith("_"):
            assert key in parameters, f"{prefix}.{key}: not a parameter of {node._target_}"


def check_encoding_fields(prefix: str, node: DictConfig) -> None:
    """A pe entry: ``_target_`` names an encoding class, every other key is one of its fields."""
    target = node.get("_target_")
    assert target is not None, f"{prefix}: a pe entry names its encoding with _target_"
    cls = get_class(target)
    assert issubclass(cls, Encoding), f"{prefix}._target_={target!r} is no pe encoding"
    names = {f.name for f in fields(cls)} | {"_target_"}
    assert set(node) <= names, f"{prefix}: {set(node) - names} are not fields of {target}"


def composed_keys() -> dict[str, str]:
    out: dict[str, str] = {}
    runs = [[f"{g}={o}"] for g in GROUPS for o in group_options(g) if "/" not in o]
    runs += [[f"+experiment={e}"] for e in group_options("experiment")]
    for overrides in runs:
        cfg = compose_cfg(overrides)
        walk(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), "", out)
    return out


@pytest.fixture(scope="module")
def keys():
    return composed_keys()


def reads(reader: str, key: str) -> bool:
    """Whether ``reader`` (``module:qualname`` or ``interpolation:<key>``) reads ``key``."""
    leaf = key.split(".")[-1].removesuffix("[]")
    if reader.startswith("interpolation:"):  # e.g. data.loader.path: ${..path} in an option
        passed_to = reader.split(":", 1)[1].split(".")[-1]
        pattern = rf"^\s*{passed_to}: \$\{{(\.\.{leaf}|{re.escape(key)})\}}"
        return any(re.search(pattern, path.read_text(), flags=re.M)
                   for path in (CONF_DIR / key.split(".")[0]).glob("*.yaml"))
    module, qualname = reader.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    source = inspect.getsource(obj)
    return re.search(rf"[.\"']{re.escape(leaf)}\b", source) is not None


def test_every_plain_key_is_on_the_page_and_every_row_is_a_key(keys):
    plain = {k for k, kind in keys.items() if kind == "plain"}
    rows = set(documented())
    assert plain - rows == set(), "keys missing from docs/config_keys.md"
    assert rows - set(keys) == set(), "rows of docs/config_keys.md that no option composes to"


def test_every_reader_on_the_page_reads_its_key():
    rows = documented()
    assert all(rows.values()), [key for key, readers in rows.items() if not readers]
    wrong = [f"{key}: {reader}" for key, readers in rows.items() for reader in readers
             if not reads(reader, key)]
    assert wrong == [], "readers that do not read their key"


def test_the_check_catches_a_key_nothing_reads():
    assert not reads("mmgnn.train.job:prepare", "optim.name")
    out = {}
    walk(OmegaConf.create({"optim": {"lr": 1.0, "name": "sgd"}}), "", out)
    assert "optim.name" in out and "optim.name" not in documented()
