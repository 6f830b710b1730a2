"""The meta-database: tasks, runs, meta-labels and stored models in one SQLite file, task descriptors,
and meta-testing by warm start from the most similar stored task.

```python
from metalearn_kit.store import MetaDatabase, StoreRecorder, warm_start
db = MetaDatabase()                                    # $METALEARN_KIT_DB or the user data folder
recorder = StoreRecorder(db, "maml", "conv-restorer", config, seed=0)   # meta_train(..., store=recorder)
result = warm_start(db, new_task, make_model, loss_fn, by="both", finetune_steps=10)
```
"""

from .db import ArtefactIntegrityError, ArtefactPathError, MetaDatabase, MetaDatabaseError, default_path
from .recorder import StoreRecorder
from .similarity import (
    DESCRIPTOR_NAMES,
    descriptor_distance,
    estimate_noise_sigma,
    rank_by_descriptor,
    rank_by_support_loss,
    task_descriptor,
)
from .warmstart import Candidate, WarmStartResult, compare_warm_start, restoration_psnr, warm_start

__all__ = [
    "MetaDatabase", "MetaDatabaseError", "ArtefactIntegrityError", "ArtefactPathError", "default_path", "StoreRecorder",
    "DESCRIPTOR_NAMES", "task_descriptor", "estimate_noise_sigma", "descriptor_distance", "rank_by_descriptor",
    "rank_by_support_loss", "warm_start", "compare_warm_start", "restoration_psnr", "Candidate",
    "WarmStartResult",
]
