"""Tasks and task distributions: degradation families, restoration and few-shot generation tasks. Every
distribution is a :class:`TaskDistribution` (``sample``; ``sample_batch`` and streaming from the base)."""

from .camera_pipeline import CameraPipeline
from .degradation_checks import (
    RAW_RANGE_TOLERANCE,
    NondeterministicDegradationError,
    UnknownParameterError,
    check_determinism,
)
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
from .restoration import RestorationTasks, sample_distinct_images
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
    "RAW_RANGE_TOLERANCE", "NondeterministicDegradationError", "UnknownParameterError", "check_determinism",
    "RestorationTasks", "FewShotGenerationTasks", "OperatorTasks", "ZeroShotSRTasks", "BicubicSRTasks",
    "SelfSupervisedDenoisingTasks", "ImageFitTasks", "bicubic_resize", "sample_distinct_images",
    "BandedDegradation", "ToneCurve", "ColourCast", "DirectionalBlur", "StripeNoise", "ChannelMisregistration",
    "CameraPipeline",
]
