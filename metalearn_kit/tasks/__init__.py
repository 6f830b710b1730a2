"""Tasks and task distributions: degradation families, restoration and few-shot generation tasks. Every
distribution is a :class:`TaskDistribution` (``sample``; ``sample_batch`` and streaming from the base)."""

from .degradations import (
    JPEG,
    SPLITS,
    Degradation,
    GaussianBlur,
    GaussianNoise,
    Inpainting,
    KernelBlur,
    MotionBlur,
    PoissonNoise,
    SuperResolution,
    blur,
    check_kernel,
    gaussian_kernel,
    list_degradations,
    make_degradation,
    motion_kernel,
    register_degradation,
    restoration_split,
)
from .generation import FewShotGenerationTasks
from .operators import (
    BandedDegradation,
    ChannelMisregistration,
    ColourCast,
    DirectionalBlur,
    StripeNoise,
    ToneCurve,
)
from .restoration import RestorationTasks
from .restoration_variants import (
    BicubicSRTasks,
    ImageFitTasks,
    OperatorTasks,
    SelfSupervisedDenoisingTasks,
    ZeroShotSRTasks,
    bicubic_resize,
)
from .task import Batch, Task, TaskBatch, TaskDistribution, stack_tasks

__all__ = [
    "Batch", "Task", "TaskBatch", "TaskDistribution", "stack_tasks",
    "Degradation", "make_degradation", "list_degradations", "register_degradation", "restoration_split",
    "SPLITS", "GaussianNoise", "PoissonNoise", "GaussianBlur", "MotionBlur", "KernelBlur", "Inpainting",
    "SuperResolution", "JPEG", "blur", "gaussian_kernel", "motion_kernel", "check_kernel",
    "RestorationTasks", "FewShotGenerationTasks", "OperatorTasks", "ZeroShotSRTasks", "BicubicSRTasks",
    "SelfSupervisedDenoisingTasks", "ImageFitTasks", "bicubic_resize",
    "BandedDegradation", "ToneCurve", "ColourCast", "DirectionalBlur", "StripeNoise", "ChannelMisregistration",
]
