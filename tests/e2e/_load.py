"""Load the e2e helper scripts as modules (the test suite runs with --import-mode=importlib,
so this directory is not on sys.path)."""

import importlib.util
import os
import sys
from types import ModuleType

HERE = os.path.dirname(os.path.abspath(__file__))
ACCURACY = os.path.join(os.path.dirname(HERE), "accuracy")  # tests/accuracy: capture.py's throwaway clusters


def load(name: str, folder: str = HERE) -> ModuleType:
    """``folder/name.py`` as a module, loaded once per run."""
    modname = "railwatch_e2e_" + name
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, os.path.join(folder, name + ".py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod
