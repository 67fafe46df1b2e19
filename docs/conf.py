"""Sphinx configuration of the jina-connectors documentation site.

Build (what .ci/run runs): ``python -m sphinx -b html -n -W --keep-going docs docs/_build/html``.
Pages are Markdown (MyST); the API reference is autodoc over the docstrings as they are
(reStructuredText roles, Google-style sections read by napoleon).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

from docutils.nodes import Element
from sphinx.application import Sphinx
from sphinx.errors import PycodeError
from sphinx.ext.napoleon import _process_docstring as _napoleon_process_docstring
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.inspect import TypeAliasForwardRef, object_description
from sphinx.util.typing import stringify_annotation

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout first, whatever is installed
# The server's app (FastAPI and its models) first: imported after the other faces (their
# frameworks) within a Sphinx build, FastAPI's models failed pydantic's schema generation
# (sphinx 9.0.4, pydantic 2.14). The server's face loads the app on first use only.
import jina_connectors.server.app  # noqa: E402, F401

FACES = (
    "embedder_core",
    "jina_connectors",
    "jina_connectors.sinks",
    "jina_connectors.ingestion.options",
    "jina_connectors.ray",
    "jina_connectors.server",
    "jina_connectors.server.wire",
)

# Sphinx 9.0's autodoc prints an alias of autodoc_type_aliases nested in another type
# (``Sequence[Span]``) by its repr, "TypeAliasForwardRef('...')": print its name instead.
TypeAliasForwardRef.__repr__ = lambda self: self.name  # type: ignore[method-assign]

project = "jina-connectors"
author = "jina-connectors contributors"
copyright = "jina-connectors contributors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "jina-connectors"
myst_heading_anchors = 3

# Autodoc: signatures as written (string annotations stay names), members in source order.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_type_aliases = {
    name: f"embedder_core.{name}" for name in ("EmbeddingType", "ArrayEmbeddingType", "Chunker")
} | {
    "SinkEmbeddingType": "jina_connectors.sinks.SinkEmbeddingType",
    "SearchFilter": "jina_connectors.SearchFilter",
    "DocumentSource": "jina_connectors.ingestion.documents.DocumentSource",
    "Span": "embedder_core.Span",
    "PoolingMode": "embedder_core.model_info.PoolingMode",
    "Reduction": "embedder_core.late_chunking.Reduction",
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Nitpicky (-n): every cross-reference must resolve. _resolve (below) links those that name
# an object a face documents, and leaves those that name any other existing object (the
# standard library, numpy, torch, the frameworks, our internals) as code without a link:
# there is no intersphinx offline. What is left to ignore names no object:
nitpick_ignore_regex = [
    # numpy by its usual alias in annotations (``np.ndarray``).
    (r"py:.*", r"np\..*"),
    # A subscripted type that Sphinx split at its first comma ("Mapping[str"): not a name.
    (r"py:.*", r".*\[.*"),
]

# Reference pages: a line ``<!-- autodoc-all: MODULE -->`` becomes one autodoc directive per
# name in ``MODULE.__all__``, documented under the face's own name, so the reference follows
# the public faces as they grow or shrink, wherever the code behind them lives.
_MARKER = "<!-- autodoc-all: "


def _attribute_doc(face: str, name: str, value: object) -> list[str]:
    """The ``#:`` comment of a constant or alias re-exported by ``face``: autodoc looks for it
    in the face's own source only (and would print the value's class docstring instead)."""
    package = face.split(".")[0]
    for module_name, module in sorted(sys.modules.items()):
        if module_name.split(".")[0] != package or vars(module).get(name, _MISSING) is not value:
            continue
        try:
            docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except PycodeError:
            continue
        if ("", name) in docs:
            return list(docs["", name])
    return []


_MISSING = object()


def _faces_before(face: str) -> tuple[str, ...]:
    return FACES[: FACES.index(face)] if face in FACES else FACES


def _earlier_face(face: str, value: object) -> str | None:
    """The face before ``face`` (in FACES order) that also exports ``value``, if any: the
    object's entry there is the one cross-references link to."""
    for earlier in _faces_before(face):
        module = importlib.import_module(earlier)
        if any(getattr(module, name) is value for name in module.__all__):
            return earlier
    return None


def _directive(face: str, name: str) -> str:
    value = getattr(importlib.import_module(face), name)
    # An object a previous face documents is shown again here, but indexed there only.
    no_index = "   :no-index:\n" if _earlier_face(face, value) is not None else ""
    if inspect.isclass(value):
        kind = "autoexception" if issubclass(value, BaseException) else "autoclass"
        return f".. {kind}:: {face}.{name}\n{no_index}"
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return f".. autofunction:: {face}.{name}\n{no_index}"
    shown = (
        stringify_annotation(value, "fully-qualified-except-typing")
        if _is_alias(value)
        else object_description(value)
    )
    body = "".join(f"   {line}\n" for line in _attribute_doc(face, name, value))
    # A constant or alias of a name an earlier face exports (``Chunker``, ``SearchFilter``):
    # indexed there only, so that its short name in annotations has one target.
    if no_index or any(name in importlib.import_module(f).__all__ for f in _faces_before(face)):
        no_index = "   :no-index:\n"
    return f".. py:data:: {face}.{name}\n{no_index}   :value: {shown}\n\n{body}"


def _is_alias(value: object) -> bool:
    return type(value).__module__ in ("typing", "types", "typing_extensions")


def _expand_face(app: Sphinx, docname: str, source: list[str]) -> None:
    lines = []
    for line in source[0].splitlines(keepends=True):
        if line.startswith(_MARKER):
            module = line[len(_MARKER) :].split()[0]
            names = importlib.import_module(module).__all__
            body = "\n".join(_directive(module, name) for name in names)
            lines.append(f"```{{eval-rst}}\n.. currentmodule:: {module}\n\n{body}```\n")
        else:
            lines.append(line)
    source[0] = "".join(lines)


# -- cross-references that autodoc's docstrings make ----------------------------------------
# A docstring names code by the path it lives at (``jina_connectors.ingestion.run.ingest``) or by
# a bare name in its class (``close``). Such a reference links to the object's page entry
# when a face documents that same object; it stays code without a link when the object
# exists but is internal (not on the site); it warns only when it names nothing that exists.


def _documented_objects() -> dict[int, str]:
    documented: dict[int, str] = {}
    for face in FACES:
        module = importlib.import_module(face)
        for name in module.__all__:
            value = getattr(module, name)
            documented.setdefault(id(value), f"{face}.{name}")
            if inspect.isclass(value):
                for member, attribute in vars(value).items():
                    if not member.startswith("_"):
                        documented.setdefault(id(attribute), f"{face}.{name}.{member}")
    return documented


def _lookup(path: str) -> tuple[bool, object]:
    """The object a dotted path names, importing the longest module prefix."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for part in parts[cut:]:
                # Modules by getattr (their lazy names), classes statically (no property runs).
                get = getattr if inspect.ismodule(value) else inspect.getattr_static
                value = get(value, part)
        except AttributeError:
            return False, None
        return True, value
    return False, None


def _candidates(node: Element) -> list[str]:
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    found = [target]
    if module and cls:
        found.append(f"{module}.{cls}.{target}")
        owner_found, owner = _lookup(f"{module}.{cls}")
        if owner_found and inspect.isclass(owner):
            found += [
                f"{klass.__module__}.{klass.__qualname__}.{target}" for klass in owner.__mro__
            ]
            found.append(f"{owner.__module__}.{target}")
    if module:
        found.append(f"{module}.{target}")
    if "." not in target:  # a bare name of the module the docstring comes from
        found += [
            f"{name}.{target}"
            for name, loaded in sorted(sys.modules.items())
            if name.split(".")[0] in {"embedder_core", "jina_connectors"} and target in vars(loaded)
        ]
    return found


def _resolve(app: Sphinx, env: Any, node: Element, contnode: Element) -> Element | None:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    if target[:1] in "\"'" or target.lstrip("-").replace(".", "").isdigit():
        return contnode  # a Literal's value in an annotation, not a name
    documented = app.env.app_documented if hasattr(app.env, "app_documented") else None
    if documented is None:
        documented = app.env.app_documented = _documented_objects()
    domain = env.domains["py"]
    for candidate in _candidates(node):
        exists, value = _lookup(candidate)
        if not exists:
            continue
        if isinstance(value, (staticmethod, classmethod, property)):
            value = value.__func__ if not isinstance(value, property) else value
        name = documented.get(id(value))
        if name is not None:
            resolved = domain.resolve_xref(
                env, node["refdoc"], app.builder, node["reftype"], name, node, contnode
            ) or domain.resolve_any_xref(env, node["refdoc"], app.builder, name, node, contnode)
            if isinstance(resolved, list):
                resolved = resolved[0][1] if resolved else None
            if resolved is not None:
                return resolved
        return contnode  # exists, internal: code without a link
    return None


def _docstrings_without_napoleon_for_attributes(app: Sphinx) -> None:
    """napoleon reads an attribute's or property's first line as ``type: description``; ours
    are prose ("Valid task names: ..."). Run it on the other docstrings only."""
    listeners = app.events.listeners["autodoc-process-docstring"]
    for index, listener in enumerate(listeners):
        if listener.handler is _napoleon_process_docstring:

            def skip_attributes(app: Sphinx, what: str, *args: Any) -> None:
                if what not in ("attribute", "property", "data"):
                    _napoleon_process_docstring(app, what, *args)

            listeners[index] = listener._replace(handler=skip_attributes)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("source-read", _expand_face)
    app.connect("missing-reference", _resolve)
    app.connect("builder-inited", _docstrings_without_napoleon_for_attributes)
    return {"parallel_read_safe": True}
