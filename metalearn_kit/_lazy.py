"""The one lazy-export helper every package ``__init__`` uses: public names load their module on first access,
so ``import metalearn_kit`` (or any sub-package) stays cheap and pulls in no Jupyter, widget or plotting module.

```python
__getattr__, __dir__, __all__ = lazy_exports(__name__, {"MAML": ".meta", "photos": ".data"})
```
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str], submodules: tuple[str, ...] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: each name in ``exports`` is read from its module
    (``".tasks"``, relative to ``package``, or absolute) on first access and cached in the package; each name
    in ``submodules`` is a sub-module loaded on first access."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name], package), name)
        elif name in submodules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    names = sorted({*exports, *submodules})

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__, names
