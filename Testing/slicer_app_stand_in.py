"""Stand-ins for the few parts of the Slicer application BigVolume.py uses, so its logic runs under pytest.

The MRML classes, `slicer.util` and the markups are the real ones (slicer-core wheel); only what needs
the application is stood in: the ScriptedLoadableModule base classes, translation, the parameter node
wrapper, the application object, and PythonQt's `qt` (settings in a dict, timers that tests tick).
"""

import importlib.util
import os
import sys
import types

from conftest import ROOT


class Settings:
    store = {}

    def value(self, key, default=None):
        return self.store.get(key, default)

    def setValue(self, key, value):
        self.store[key] = value


class Timer:
    def __init__(self):
        self.callbacks, self.active, self.interval = [], False, None

    def setInterval(self, ms):
        self.interval = ms

    def connect(self, signal, callback):
        assert signal == "timeout()"
        self.callbacks.append(callback)

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def tick(self):
        for callback in self.callbacks:
            callback()


def load_module(monkeypatch, scene, cache_path):
    """Import BigVolume/BigVolume.py against `scene` (as slicer.mrmlScene); returns the module."""
    import slicer
    import slicer.util

    scripted = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

    scripted.ScriptedLoadableModule = type("ScriptedLoadableModule", (), {"__init__": lambda self, parent: None})
    scripted.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
    scripted.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    scripted.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (), {})
    scripted.__all__ = [name for name in vars(scripted) if name.startswith("Scripted")]
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    for validator in ("Choice", "Decimals", "Minimum", "WithinRange"):
        setattr(wrapper, validator, lambda *args: args)
    qt = types.ModuleType("qt")
    qt.QSettings, qt.QTimer = Settings, Timer
    qt.Qt = types.SimpleNamespace(WaitCursor=None)
    Settings.store = {}
    for name, module in (("slicer.ScriptedLoadableModule", scripted), ("slicer.i18n", i18n),
                         ("slicer.parameterNodeWrapper", wrapper), ("qt", qt)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    app = types.SimpleNamespace(cachePath=str(cache_path), processEvents=lambda: None,
                                setOverrideCursor=lambda cursor: None, restoreOverrideCursor=lambda: None)
    monkeypatch.setattr(slicer, "app", app, raising=False)

    class ProgressDialog:
        value = 0
        wasCanceled = False

        def close(self):
            pass

    monkeypatch.setattr(slicer.util, "createProgressDialog", lambda **kwargs: ProgressDialog())
    spec = importlib.util.spec_from_file_location("BigVolume", os.path.join(ROOT, "BigVolume", "BigVolume.py"))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "BigVolume", module)
    spec.loader.exec_module(module)
    logic = module.BigVolumeLogic()
    monkeypatch.setattr(slicer.util, "getModuleLogic", lambda name: logic if name == "BigVolume" else None)
    return module, logic
