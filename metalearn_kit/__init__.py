"""metalearn-kit: meta-learning for image generation and restoration, for learners and researchers.

```python
import metalearn_kit as mk
learner = mk.MAML(mk.ConvRestorer(), inner_lr=0.05, inner_steps=5)
tasks = mk.RestorationTasks(mk.photos("train", patch_size=32), "gaussian_noise", shots=5, queries=5)
history = mk.meta_train(learner, tasks, loss_fn, mk.MetaTrainConfig(iterations=100, meta_batch=4))
model, meta = mk.load_pretrained("restoration_denoise_maml")
```

Importing the package is cheap: every public name (and each sub-package: ``data``, ``tasks``, ``models``,
``meta``, ``recipes``, ``evaluation``, ``store``, ``viz``, ``widgets``, ``commands``) loads its module on
first access (:func:`metalearn_kit._lazy.lazy_exports`), and nothing here imports Jupyter or widget modules.
"""

from __future__ import annotations

from ._lazy import lazy_exports
from .config import describe_machine, get_device, get_profile, profile_sizes, seed_everything

__version__ = "0.1.0"

_EXPORTS = {
    # meta-learning engine
    **dict.fromkeys(["MAML", "FOMAML", "MetaSGD", "ANIL", "Reptile", "meta_train", "MetaTrainConfig", "FuncBackend",
                     "HigherBackend", "finetune", "adapt_module", "adapt_then_query", "joint_pretrain",
                     "scratch_baseline", "DivergenceError"], ".meta"),
    # tasks and task distributions
    **dict.fromkeys(["Task", "TaskBatch", "TaskDistribution", "RestorationTasks", "FewShotGenerationTasks",
                     "OperatorTasks", "ZeroShotSRTasks", "BicubicSRTasks", "SelfSupervisedDenoisingTasks",
                     "ImageFitTasks", "make_degradation", "list_degradations"], ".tasks"),
    # models
    **dict.fromkeys(["ConvRestorer", "EncoderRestorer", "UnrolledRestorer", "Siren", "ConvVAE",
                     "NeuralStatisticianLite", "Generator", "Critic", "PatchDictionary", "UnrolledSparseCoder"],
                    ".models"),
    # data sources
    **dict.fromkeys(["photos", "glyphs", "omniglot", "mnist", "fashion_mnist"], ".data"),
    # the checkpoint service
    **dict.fromkeys(["load_pretrained", "load_or_train", "train_pretrained", "available"], ".pretrained"),
    # recipes
    **dict.fromkeys(["build_experiment", "list_experiments", "restoration_config", "generation_config"],
                    ".recipes"),
    # metrics
    **dict.fromkeys(["psnr", "ssim", "paired_verdict"], ".evaluation"),
    # meta-database and warm starts
    **dict.fromkeys(["MetaDatabase", "StoreRecorder"], ".store"),
    **dict.fromkeys(["warm_start", "compare_warm_start", "evaluate_tasks"], ".warmstart"),
    # the benchmark tables shipped as package data
    **dict.fromkeys(["benchmark_table", "benchmark_names"], ".benchmark_tables"),
}
_SUBMODULES = ("benchmark_tables", "checkpoints", "cli", "commands", "config", "data", "evaluation", "meta", "models",
               "pretrained", "recipes", "store", "tasks", "viz", "warmstart", "widgets")

__getattr__, __dir__, _LAZY = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
__all__ = ["__version__", "describe_machine", "get_device", "get_profile", "profile_sizes", "seed_everything",
           *_LAZY]
