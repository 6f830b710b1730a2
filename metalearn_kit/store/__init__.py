"""The meta-database (persistence only): tasks, runs, meta-labels and stored models in one SQLite file, and
task descriptors. Warm starts from it (which fine-tune) are :mod:`metalearn_kit.warmstart`.

```python
from metalearn_kit.store import MetaDatabase, StoreRecorder
from metalearn_kit.warmstart import warm_start
db = MetaDatabase()                                    # $METALEARN_KIT_DB or the user data folder
recorder = StoreRecorder(db, "maml", "conv-restorer", config, seed=0)   # meta_train(..., store=recorder)
result = warm_start(db, new_task, make_model, loss_fn, by="both", finetune_steps=10)
```
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["MetaDatabase", "MetaDatabaseError", "ArtefactIntegrityError", "ArtefactPathError",
                     "default_path"], ".db"),
    "StoreRecorder": ".recorder",
    **dict.fromkeys(["meta_label_rows", "state_token"], ".labels"),
    **dict.fromkeys(["DESCRIPTOR_NAMES", "task_descriptor", "estimate_noise_sigma", "descriptor_distance",
                     "rank_by_descriptor", "rank_by_support_loss"], ".similarity"),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, ("db", "labels", "recorder", "schema", "similarity"))
