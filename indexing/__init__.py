"""Offline path: article files -> index directory.

Importing the package first imports `thinc.compat` with torch hidden. thinc (under
spaCy) imports torch eagerly only to see whether it is there, which costs seconds of
start-up and hundreds of MB for a process that embeds with ONNX Runtime; the spaCy
pipeline used here never runs on torch. torch stays importable afterwards (the torch
embedding backend and the ONNX export import it when they need it).
"""

import sys


def _import_thinc_without_torch() -> None:
    if "torch" in sys.modules or "thinc.compat" in sys.modules:
        return
    sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        import thinc.compat  # noqa: F401
    except ImportError:
        pass
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


_import_thinc_without_torch()
