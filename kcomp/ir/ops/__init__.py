"""Every op of the IR, each defined once: attributes, shape/dtype inference and numpy reference.
One module per op family; importing this package imports (and so registers) them all."""
import importlib
import pkgutil

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")
