"""The ingestion modules moved into ``jina_connectors.ingestion``: their old import paths keep
working for one release, with a DeprecationWarning, and give the same objects."""

from __future__ import annotations

import json
import subprocess
import sys

from paths import REPO_ROOT

MOVED = {
    "jina_connectors.documents": "jina_connectors.ingestion.documents",
    "jina_connectors.writer": "jina_connectors.ingestion.writer",
    "jina_connectors.progress": "jina_connectors.ingestion.progress",
    "jina_connectors.reembed": "jina_connectors.ingestion.reembed",
}
SPLIT = {  # old module -> {name: new module}
    "jina_connectors.pipeline": {
        "ingest": "jina_connectors.ingestion.run",
        "IngestReport": "jina_connectors.ingestion.run",
        "embed_batch": "jina_connectors.ingestion.stages",
        "resolve_settings": "jina_connectors.ingestion.stages",
        "EmbeddingSettings": "jina_connectors.ingestion.options",
    },
}

CHECK = """
import importlib, json, sys, warnings
moved, split = json.loads(sys.argv[1]), json.loads(sys.argv[2])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import jina_connectors, jina_connectors.ingest, jina_connectors.cli, jina_connectors.ray
out = {"own imports": [str(w.message) for w in caught if "moved to" in str(w.message)]}
for old, new in moved.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    out[old] = [module is importlib.import_module(new), [str(w.category.__name__) for w in caught]]
for old, names in split.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    new = {n: getattr(importlib.import_module(m), n) for n, m in names.items()}
    same = all(getattr(module, n) is value for n, value in new.items())
    out[old] = [same, [str(w.category.__name__) for w in caught]]
print(json.dumps(out))
"""


def test_old_paths_warn_and_give_the_same_objects() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps(MOVED), json.dumps(SPLIT)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.splitlines()[-1])
    # The package itself imports none of the old paths.
    assert found.pop("own imports") == []
    # ``jina_connectors.reembed`` is also the function on the package face: the package
    # imports the old module path first, quietly, so that a later import of it cannot rebind
    # the attribute to the module; that import therefore finds it loaded and cannot warn.
    expected = {old: [True, ["DeprecationWarning"]] for old in [*MOVED, *SPLIT]}
    expected["jina_connectors.reembed"] = [True, []]
    assert found == expected
