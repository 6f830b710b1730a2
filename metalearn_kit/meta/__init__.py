"""The meta-learning engine: MAML (second- and first-order), Meta-SGD, ANIL, Reptile, the baselines they are
compared with, and the meta-training loop.

Where things are: ``step.py`` holds the meta-step, one per-task function (``adapt_then_query``: inner loop on
the support set, loss on the query set) run ``vmap``-ed or in a loop over tasks; ``higher_backend.py`` runs the
same per-task contract with ``higher``; ``backends.py`` the two ways to run it over a meta-batch
(``FuncBackend``, ``HigherBackend``); ``inner.py`` the inner optimizers (the update line); ``maml.py`` and
``reptile.py`` the learners, thin configurations of the step; ``adapted.py`` adaptation for use; ``train.py``
the outer loop and its settings (``MetaTrainConfig``); ``distributed.py`` the same loop over several processes.

```python
from metalearn_kit.meta import MAML, MetaTrainConfig, meta_train
learner = MAML(model, inner_lr=0.05, inner_steps=5, backend="auto")
loss = learner.meta_loss(tasks, loss_fn); loss.backward()
adapted = learner.adapt(task.support, loss_fn, steps=5)
history = meta_train(learner, task_sampler, loss_fn, MetaTrainConfig(iterations=100, meta_batch=4))
```
"""

from .adapted import AdaptedModel, adapt_module
from .backends import BACKENDS, FuncBackend, HigherBackend, choose_backend
from .baselines import finetune, joint_pretrain, scratch_baseline
from .cost import autograd_saved_bytes, seconds_per_meta_step
from .inner import DivergenceError, FunctionalAdam, FunctionalSGD, make_inner_optimizer
from .maml import ANIL, FOMAML, MAML, MetaOutput, MetaSGD
from .memory import second_order_memory_estimate
from .reptile import Reptile
from .step import InnerLoop, LossFn, TaskResult, adapt_tasks, adapt_then_query, functional_meta_grad
from .train import MetaTrainConfig, meta_train, sample_tasks

__all__ = ["MAML", "FOMAML", "MetaSGD", "ANIL", "Reptile", "BACKENDS", "FuncBackend", "HigherBackend",
           "choose_backend", "MetaOutput", "LossFn", "InnerLoop", "TaskResult", "adapt_then_query", "adapt_tasks",
           "functional_meta_grad", "AdaptedModel",
           "adapt_module", "DivergenceError", "FunctionalSGD", "FunctionalAdam", "make_inner_optimizer",
           "second_order_memory_estimate", "meta_train", "MetaTrainConfig", "sample_tasks", "finetune",
           "joint_pretrain", "scratch_baseline", "seconds_per_meta_step", "autograd_saved_bytes"]
