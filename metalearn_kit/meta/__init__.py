"""The meta-learning engine: MAML (second- and first-order), Meta-SGD, ANIL-style partial adaptation,
Reptile, the baselines they are compared with, and the meta-training loop.

```python
from metalearn_kit.meta import MAML, meta_train
learner = MAML(model, inner_lr=0.05, inner_steps=5, backend="auto")
loss = learner.meta_loss(tasks, loss_fn); loss.backward()
adapted = learner.adapt(task.support, loss_fn, steps=5)
```
"""

from .baselines import finetune, joint_pretrain, scratch_baseline
from .inner import DivergenceError, FunctionalAdam, FunctionalSGD, make_inner_optimizer
from .maml import (
    FOMAML,
    MAML,
    AdaptedModel,
    MetaOutput,
    MetaSGD,
    adapt_module,
    choose_backend,
    second_order_memory_estimate,
)
from .reptile import Reptile
from .train import meta_train, sample_tasks

__all__ = ["MAML", "FOMAML", "MetaSGD", "AdaptedModel", "MetaOutput", "DivergenceError", "FunctionalSGD",
           "FunctionalAdam", "make_inner_optimizer", "adapt_module", "choose_backend",
           "second_order_memory_estimate", "Reptile", "meta_train", "sample_tasks", "finetune",
           "joint_pretrain", "scratch_baseline"]
