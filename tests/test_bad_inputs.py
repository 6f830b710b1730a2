"""Bad inputs across the public API: every case must raise ``ValueError``/``TypeError`` (or a subclass) whose
message names the argument -- never a raw error from deep inside torch, sqlite or argparse's traceback.

One parametrised table: ``(id, call, expected exception type, regex the message must match)``. CLI cases run
``metalearn_kit.cli.main([...])`` and expect exit code 2 with a stderr line naming the flag.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from metalearn_kit import checkpoints
from metalearn_kit.cli import main as cli_main
from metalearn_kit.data import ClassImageSource, fashion_mnist, glyphs, mnist, omniglot, photos
from metalearn_kit.evaluation.metrics import psnr, ssim
from metalearn_kit.meta import (
    MAML,
    MetaSGD,
    MetaTrainConfig,
    Reptile,
    finetune,
    joint_pretrain,
    meta_train,
    scratch_baseline,
)
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.models.gan import ConditionalGenerator, Critic, Generator
from metalearn_kit.models.generation import ConvVAE
from metalearn_kit.models.restoration import UnrolledRestorer
from metalearn_kit.models.siren import Siren
from metalearn_kit.pretrained import load_pretrained
from metalearn_kit.recipes import build_experiment, generation_config, restoration, restoration_config
from metalearn_kit.recipes.generation import meta_training_parts as generation_meta_training_parts
from metalearn_kit.store import MetaDatabase
from metalearn_kit.tasks import (
    Degradation,
    FewShotGenerationTasks,
    GaussianBlur,
    GaussianNoise,
    KernelBlur,
    RestorationTasks,
    Task,
    gaussian_kernel,
    make_degradation,
    motion_kernel,
)

torch.set_num_threads(1)


# ------------------------------------------------------------------ small, fast fixtures (built per call)

def _images(n=6, channels=1, size=16, seed=0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _class_source(classes=4, per_class=5) -> ClassImageSource:
    g = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (classes * per_class, 1, 12, 12), generator=g, dtype=torch.uint8)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ClassImageSource("fake", pixels, labels, [f"c{i}" for i in range(classes)])


class _OutOfRangeSource:
    """A class source whose images are in [0, 255] floats: a common mistake (forgot to divide by 255)."""

    num_classes = 3
    images_per_class = 6

    def images_of(self, index):
        return torch.full((6, 1, 8, 8), 200.0)


def _mse(model, batch):
    return F.mse_loss(model(batch[0]), batch[1])


def _task(channels=1, size=8, shots=2) -> Task:
    clean = _images(2 * shots, channels, size)
    noisy = (clean + 0.1).clamp(0, 1)
    return Task((noisy[:shots], clean[:shots]), (noisy[shots:], clean[shots:]), {})


def _learner(**kwargs) -> MAML:
    return MAML(ConvRestorer(channels=1, width=4, depth=2), inner_lr=0.05, inner_steps=1, **kwargs)


class _Tasks:
    def sample_batch(self, n, generator):
        return [_task() for _ in range(n)]


def _train(**kwargs):
    settings = dict(iterations=1, meta_batch=1, progress=False)
    settings.update(kwargs)
    return meta_train(_learner(), _Tasks(), _mse, MetaTrainConfig(**settings))


def _nan_support():
    task = _task()
    task.support[0][0, 0, 0, 0] = float("nan")
    return task.support


def _restoration_tasks(**kwargs):
    settings = dict(source=_images(), degradations="gaussian_noise", shots=2, queries=1)
    settings.update(kwargs)
    return RestorationTasks(**settings)


def _apply(clean, params=None, family="gaussian_noise"):
    degradation = make_degradation(family)
    return degradation.apply(clean, degradation.sample_params(0) if params is None else params, 0)


def _checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    checkpoints.save(path, torch.nn.Linear(3, 2), {"note": "test"})
    return path


def _db(tmp_path):
    db = MetaDatabase(tmp_path / "meta.sqlite")
    run = db.add_run("maml", "conv", {"inner_steps": 1}, seed=0)
    task = db.add_task({"family": "gaussian_noise", "params": {"sigma": 0.1}})
    return db, run, task


def _text_file(tmp_path, name="notes.sqlite"):
    path = tmp_path / name
    path.write_text("these are my notes, not a database\n" * 20)
    return path


def _widget(name):
    from metalearn_kit import widgets

    return getattr(widgets, name)


# user degradations with one fault each (not registered: applied directly, or registered inside the call)
class _NaNs(Degradation, register=False):
    default_ranges = {"train": {"amount": (0.1, 0.2)}}

    def degrade(self, clean, params, generator):
        return clean / (clean - clean)  # 0 / 0


class _Bytes(Degradation, register=False):
    default_ranges = {"train": {"amount": (0.1, 0.2)}}

    def degrade(self, clean, params, generator):
        return (clean * 255).to(torch.uint8)


class _Doubles(Degradation, register=False):
    default_ranges = {"train": {"amount": (0.1, 0.2)}}

    def degrade(self, clean, params, generator):
        return clean.double() * (1 - params["amount"])


class _Scale255(Degradation, register=False):
    default_ranges = {"train": {"amount": (0.1, 0.2)}}

    def degrade(self, clean, params, generator):
        return clean * 255.0


class _Typo(Degradation, register=False):
    default_ranges = {"train": {"amount": (0.1, 0.2)}}

    def degrade(self, clean, params, generator):
        return clean * (1 - params["amout"])


class _Cropper(Degradation, register=False):
    default_ranges = {"train": {"amount": (0.1, 0.2)}}

    def degrade(self, clean, params, generator):
        return clean[..., 1:, 1:]


def _apply_user(cls):
    degradation = cls()
    return degradation.apply(_images(2), degradation.sample_params(0), 0)


def _register_global_rng():
    class GlobalNoise(Degradation):  # noqa: F841 - defining it registers it, which probes it
        name = "global_noise_bad_input"
        default_ranges = {"train": {"sigma": (0.05, 0.1)}}

        def degrade(self, clean, params, generator):
            return clean + params["sigma"] * torch.randn(clean.shape)  # the global generator, not `generator`


def _planted_artefact(tmp_path):
    import sqlite3

    db = MetaDatabase(tmp_path / "db" / "meta.sqlite")
    path = db.add_artefact(db.add_run("maml", "tiny"), None, torch.nn.Linear(3, 2))
    elsewhere = tmp_path / "elsewhere" / "w.safetensors"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(path.read_bytes())
    con = sqlite3.connect(db.path)
    con.execute("UPDATE artefacts SET path = '../../elsewhere/w.safetensors' WHERE id = 1")
    con.commit()
    con.close()
    return db.load_artefact(1)


def _empty_folder(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    return folder


# ------------------------------------------------------------------ the table

# each call takes tmp_path (most ignore it)
CASES = [
    # --- data sources (argument checks run before anything is drawn or downloaded)
    ("glyphs-split", lambda p: glyphs(split="training"), ValueError, r"split must be one of .*'training'"),
    ("glyphs-image_size", lambda p: glyphs(image_size=4), ValueError, r"image_size must be >= 8, got 4"),
    ("glyphs-seed", lambda p: glyphs(seed=-1), ValueError, r"seed must be >= 0"),
    ("glyphs-images_per_class", lambda p: glyphs(images_per_class=2.5), TypeError, r"images_per_class must be an int"),
    ("glyphs-cache", lambda p: glyphs(cache="yes"), TypeError, r"cache must be True or False"),
    ("photos-split", lambda p: photos(split="holdout"), ValueError, r"split must be one of"),
    ("photos-channels", lambda p: photos(channels=2), ValueError, r"channels must be 1 \(grey\) or 3"),
    ("photos-channels-type", lambda p: photos(channels="rgb"), TypeError, r"channels must be the int 1"),
    ("photos-patch_size", lambda p: photos(patch_size=4), ValueError, r"patch_size must be >= 8"),
    ("omniglot-split", lambda p: omniglot(root=p, split="train"), ValueError, r"split must be one of"),
    ("omniglot-image_size", lambda p: omniglot(root=p, image_size=7), ValueError, r"image_size must be >= 8"),
    ("mnist-split", lambda p: mnist(root=p, split="validation"), ValueError, r"split must be one of"),
    ("fashion_mnist-image_size", lambda p: fashion_mnist(root=p, image_size=1024), ValueError,
     r"image_size must be <= 512"),
    ("class-source-pixels", lambda p: ClassImageSource("x", torch.rand(4, 1, 8, 8), torch.zeros(4), ["a"]),
     TypeError, r"pixels must be a uint8 tensor"),
    ("class-source-labels", lambda p: ClassImageSource("x", torch.zeros(4, 1, 8, 8, dtype=torch.uint8),
                                                       torch.tensor([0, 1, 2, 5]), ["a", "b", "c"]),
     ValueError, r"labels must lie in \[0, 3\)"),
    ("class-source-index", lambda p: _class_source().images_of(99), ValueError, r"class_index must be <= 3"),

    # --- restoration task distribution: images are checked where they enter
    ("restoration-shots", lambda p: _restoration_tasks(shots=0), ValueError, r"shots must be >= 1"),
    ("restoration-queries", lambda p: _restoration_tasks(queries=-1), ValueError, r"queries must be >= 1"),
    ("restoration-split", lambda p: _restoration_tasks(split="dev"), ValueError, r"split must be one of"),
    ("restoration-source-type", lambda p: _restoration_tasks(source=[1, 2, 3]), TypeError, r"source must be"),
    ("restoration-source-range", lambda p: _restoration_tasks(source=_images() * 255), ValueError,
     r"source must have values in \[0, 1\]"),
    ("restoration-source-nan", lambda p: _restoration_tasks(source=_images().index_fill(0, torch.tensor([1]),
                                                                                        float("nan"))),
     ValueError, r"source contains NaN"),
    ("restoration-source-dtype", lambda p: _restoration_tasks(source=(_images() * 255).to(torch.uint8)),
     TypeError, r"source must be a floating-point tensor"),
    ("restoration-source-rank", lambda p: _restoration_tasks(source=_images()[0]), ValueError,
     r"source must have shape \[N, C, H, W\]"),
    ("restoration-family", lambda p: _restoration_tasks(degradations="fog"), ValueError,
     r"unknown degradation family 'fog'"),
    ("restoration-no-family", lambda p: _restoration_tasks(degradations=[]), ValueError,
     r"degradations must name at least one family"),
    ("restoration-family-twice", lambda p: _restoration_tasks(degradations=["gaussian_noise", "gaussian_noise"]),
     ValueError, r"degradations must be distinct"),
    ("restoration-range-order", lambda p: _restoration_tasks(degradations={"gaussian_noise": {"sigma": (0.3, 0.1)}}),
     ValueError, r"sigma range must have low <= high"),
    ("restoration-too-small", lambda p: _restoration_tasks(source=_images(size=6), degradations="gaussian_blur"),
     ValueError, r"too small for kernel_size"),
    ("restoration-sample_batch-n", lambda p: _restoration_tasks().sample_batch(0), ValueError, r"n must be >= 1"),

    # --- few-shot generation task distribution
    ("generation-source", lambda p: FewShotGenerationTasks(_images(), shots=1, queries=1), TypeError,
     r"source must be a class image source"),
    ("generation-shots", lambda p: FewShotGenerationTasks(_class_source(), shots=0, queries=1), ValueError,
     r"shots must be >= 1"),
    ("generation-ways", lambda p: FewShotGenerationTasks(_class_source(), shots=1, queries=1, ways=9), ValueError,
     r"ways=9 exceeds the 4 classes"),
    ("generation-too-many-shots", lambda p: FewShotGenerationTasks(_class_source(), shots=4, queries=4), ValueError,
     r"shots \+ queries = 4 \+ 4 = 8 exceeds"),
    ("generation-source-range", lambda p: FewShotGenerationTasks(_OutOfRangeSource(), shots=2, queries=2).sample(0),
     ValueError, r"source.images_of\(\d\) must have values in \[0, 1\]"),

    # --- degradations and kernels
    ("degradation-unknown", lambda p: make_degradation("fog"), ValueError, r"unknown degradation family 'fog'"),
    ("degradation-type", lambda p: make_degradation(42), TypeError, r"family must be a degradation name"),
    ("degradation-split", lambda p: make_degradation("gaussian_noise", split="holdout"), ValueError,
     r"split must be one of"),
    ("degradation-negative-sigma", lambda p: make_degradation("gaussian_noise", sigma=(-0.1, 0.2)), ValueError,
     r"sigma must be >= 0"),
    ("degradation-unknown-param", lambda p: make_degradation("gaussian_noise", blur=(1, 2)), ValueError,
     r"no parameter\(s\) \['blur'\]"),
    ("apply-rank", lambda p: _apply(_images()[0]), ValueError, r"clean must have shape \[N, C, H, W\]"),
    ("apply-dtype", lambda p: _apply((_images() * 255).to(torch.uint8)), TypeError,
     r"clean must be a floating-point tensor"),
    ("apply-range", lambda p: _apply(_images() * 255), ValueError, r"clean must have values in \[0, 1\]"),
    ("apply-nan", lambda p: _apply(torch.full((1, 1, 16, 16), float("nan"))), ValueError, r"clean contains NaN"),
    ("apply-inf", lambda p: _apply(torch.full((1, 1, 16, 16), float("inf"))), ValueError, r"clean contains NaN or Inf"),
    ("apply-params-missing", lambda p: _apply(_images(), {}), ValueError, r"params is missing \['sigma'\]"),
    ("apply-params-type", lambda p: _apply(_images(), {"sigma": "high"}), TypeError, r"sigma must be a number"),
    ("apply-sr-divisible", lambda p: _apply(_images(size=31), family="super_resolution"), ValueError,
     r"must be divisible by scale"),
    ("gaussian_kernel-even", lambda p: gaussian_kernel(4, 1.0), ValueError, r"size must be odd"),
    ("gaussian_kernel-sigma", lambda p: gaussian_kernel(5, 0.0), ValueError, r"sigma must be > 0"),
    ("motion_kernel-length", lambda p: motion_kernel(5, 9.0, 0.0), ValueError, r"length 9.0 does not fit"),
    ("kernel-sum", lambda p: KernelBlur(kernels=[torch.ones(3, 3)]), ValueError, r"kernels\[0\] must sum to one"),
    ("kernel-even", lambda p: KernelBlur(kernels=[torch.ones(4, 4) / 16]), ValueError,
     r"kernels\[0\] must be a square 2-D tensor with an odd size"),
    ("kernel-nan", lambda p: KernelBlur(kernels=[torch.full((3, 3), float("nan"))]), ValueError,
     r"kernels\[0\] contains NaN"),
    ("blur-kernel_size", lambda p: GaussianBlur(kernel_size=4), ValueError, r"kernel_size must be odd"),

    # --- models: constructors and forward inputs
    ("conv-width", lambda p: ConvRestorer(width=0), ValueError, r"width must be >= 1"),
    ("conv-channels", lambda p: ConvRestorer(channels=0), ValueError, r"channels must be >= 1"),
    ("conv-norm", lambda p: ConvRestorer(norm="batch"), ValueError, r"norm must be one of"),
    ("conv-forward-channels", lambda p: ConvRestorer(channels=1, width=4)(_images(2, channels=3)), ValueError,
     r"x must have 1 channel\(s\) for this model, got 3"),
    ("conv-forward-rank", lambda p: ConvRestorer(channels=1, width=4)(_images(2)[0]), ValueError,
     r"x must be a \[N, C, H, W\] tensor, got \(1, 16, 16\)"),
    ("residual-forward-channels", lambda p: ConvRestorer(channels=1, width=4)(_images(2, channels=3)),
     ValueError, r"x must have 1 channel"),
    ("unrolled-kind", lambda p: UnrolledRestorer("deconv"), ValueError, r"kind must be one of"),
    ("unrolled-scale", lambda p: UnrolledRestorer("sr", scale=1), ValueError, r"scale must be >= 2"),
    ("vae-image_size", lambda p: ConvVAE(image_size=30), ValueError, r"image_size must be a multiple of 4"),
    ("vae-likelihood", lambda p: ConvVAE(likelihood="gaussian"), ValueError, r"likelihood must be one of"),
    ("vae-forward-channels", lambda p: ConvVAE(channels=1, image_size=16, width=4, hidden=8)(_images(2, channels=3)),
     ValueError, r"images must have 1 channel\(s\) for this model, got 3"),
    ("vae-forward-size", lambda p: ConvVAE(channels=1, image_size=16, width=4, hidden=8)(_images(2, size=20)),
     ValueError, r"images must be 16x16 for this model, got 20x20"),
    ("critic-forward-size", lambda p: Critic(channels=1, image_size=16, width=4)(_images(2, size=12)), ValueError,
     r"images must be 16x16 for this model, got 12x12"),
    ("generator-forward-latent", lambda p: Generator(latent=8, image_size=16, width=4, hidden=8)(torch.randn(2, 5)),
     ValueError, r"z must have shape \[N, 8\]"),
    ("conditional-labels", lambda p: ConditionalGenerator(3, latent=4, image_size=8, width=4, hidden=8)(
        torch.randn(2, 4), torch.zeros(2)), TypeError, r"labels must be an int64 tensor"),
    ("siren-omega", lambda p: Siren(omega=0.0), ValueError, r"omega must be > 0"),
    ("siren-coords", lambda p: Siren(width=4, hidden_layers=1)(torch.rand(10, 3)), ValueError,
     r"coords must have shape \[P, 2\]"),

    # --- meta-learners
    ("maml-model", lambda p: MAML("convnet"), TypeError, r"model must be an nn.Module"),
    ("maml-inner_steps", lambda p: _learner(inner_optimizer="lbfgs"), ValueError, r"inner_optimizer must be one of"),
    ("maml-first_order", lambda p: MAML(ConvRestorer(width=4), first_order="yes"), TypeError,
     r"first_order must be True or False"),
    ("maml-inner_lr-nan", lambda p: MAML(ConvRestorer(width=4), inner_lr=float("nan")), ValueError,
     r"inner_lr must be finite"),
    ("reptile-first_order", lambda p: Reptile(ConvRestorer(width=4), first_order=False), ValueError,
     r"first_order must be True for Reptile"),
    ("metasgd-lr_shape", lambda p: MetaSGD(ConvRestorer(width=4), lr_shape="row"), ValueError,
     r"lr_shape must be one of"),
    ("meta_loss-empty", lambda p: _learner().meta_loss([], _mse), ValueError, r"tasks must hold at least one"),
    ("meta_loss-channels", lambda p: _learner().meta_loss([_task(channels=3)], _mse), ValueError,
     r"x must have 1 channel\(s\) for this model, got 3"),
    ("meta_loss-not-tasks", lambda p: _learner().meta_loss([_task().support], _mse), TypeError,
     r"tasks must be Task objects"),
    ("adapt-steps", lambda p: _learner().adapt(_task().support, _mse, steps=-1), ValueError, r"steps must be >= 0"),
    ("adapt-task", lambda p: _learner().adapt(_task(), _mse), TypeError, r"support must be a tuple of tensors"),
    ("adapt-nan", lambda p: _learner().adapt(_nan_support(), _mse, steps=0), ValueError,
     r"support\[0\] contains NaN or Inf"),
    ("adapt-lr", lambda p: _learner().adapt(_task().support, _mse, lr=0.0), ValueError, r"lr must be > 0"),
    ("finetune-steps", lambda p: finetune(ConvRestorer(width=4), _task().support, _mse, steps=-1, lr=0.1),
     ValueError, r"steps must be >= 0"),

    # --- the training loop
    ("train-no-budget", lambda p: _train(iterations=None), ValueError, r"give iterations or time_budget_s"),
    ("train-iterations", lambda p: _train(iterations=0), ValueError, r"iterations must be >= 1"),
    ("train-iterations-type", lambda p: _train(iterations=2.0), TypeError, r"iterations must be an int"),
    ("train-meta_batch", lambda p: _train(meta_batch=0), ValueError, r"meta_batch must be >= 1"),
    ("train-time_budget", lambda p: _train(iterations=None, time_budget_s=-1.0), ValueError,
     r"time_budget_s must be > 0"),
    ("train-meta_lr", lambda p: _train(meta_lr=0.0), ValueError, r"meta_lr must be > 0"),
    ("train-meta_lr-nan", lambda p: _train(meta_lr=float("nan")), ValueError, r"meta_lr must be finite"),
    ("train-grad_clip", lambda p: _train(grad_clip=0.0), ValueError, r"grad_clip must be > 0"),
    ("train-sampler", lambda p: meta_train(_learner(), object(), _mse, MetaTrainConfig(iterations=1, progress=False)),
     TypeError, r"task_sampler must have a .sample_batch"),
    ("train-resume", lambda p: _train(resume=True), ValueError, r"resume=True needs checkpoint_dir"),

    # --- metrics
    ("psnr-shape", lambda p: psnr(_images(2), _images(2, size=8)), ValueError,
     r"prediction and target must have the same shape"),
    ("psnr-data_range", lambda p: psnr(_images(2), _images(2), data_range=0), ValueError, r"data_range must be > 0"),
    ("psnr-dtype", lambda p: psnr(torch.ones(1, 1, 8, 8, dtype=torch.uint8), _images(1, size=8)), TypeError,
     r"prediction must be a floating-point tensor"),
    ("psnr-nan", lambda p: psnr(torch.full((1, 1, 8, 8), float("nan")), _images(1, size=8)), ValueError,
     r"prediction contains NaN"),
    ("psnr-range", lambda p: psnr(_images(1) * 255, _images(1)), ValueError,
     r"prediction must have values in \[0, data_range=1.0\]"),
    ("ssim-target-nan", lambda p: ssim(_images(1), torch.full((1, 1, 16, 16), float("nan"))), ValueError,
     r"target contains NaN"),
    ("ssim-data_range", lambda p: ssim(_images(1), _images(1), data_range=-1.0), ValueError, r"data_range must be > 0"),
    ("ssim-win_size", lambda p: ssim(_images(1), _images(1), win_size=6), ValueError, r"win_size must be odd"),
    ("ssim-rank", lambda p: ssim(torch.rand(16, 16), torch.rand(16, 16)), ValueError,
     r"prediction must have shape \[N, C, H, W\] or \[C, H, W\]"),

    # --- checkpoints
    ("checkpoint-suffix", lambda p: checkpoints.save(p / "model.pt", torch.nn.Linear(2, 2)), ValueError,
     r"path must end in .safetensors"),
    ("checkpoint-state", lambda p: checkpoints.save(p / "m.safetensors", {"w": 3}), TypeError,
     r"model_or_state values must all be tensors"),
    ("checkpoint-meta", lambda p: checkpoints.save(p / "m.safetensors", torch.nn.Linear(2, 2), {"x": object()}),
     TypeError, r"meta must be JSON-serialisable"),
    ("checkpoint-garbage", lambda p: checkpoints.load(_text_file(p, "junk.safetensors")), ValueError,
     r"is not a readable safetensors file"),
    ("checkpoint-model-type", lambda p: checkpoints.load(_checkpoint(p), model="linear"), TypeError,
     r"model must be an nn.Module"),
    ("checkpoint-model-mismatch", lambda p: checkpoints.load(_checkpoint(p), model=torch.nn.Linear(5, 2)), ValueError,
     r"does not fit model Linear"),

    # --- the meta-database
    ("db-not-sqlite", lambda p: MetaDatabase(_text_file(p)), ValueError, r"is not a SQLite database"),
    ("db-memory", lambda p: MetaDatabase(":memory:"), ValueError, r"path ':memory:' is not supported"),
    ("db-path-type", lambda p: MetaDatabase(123), TypeError, r"path must be a file path"),
    ("db-timeout", lambda p: MetaDatabase(p / "m.sqlite", timeout=0), ValueError, r"timeout must be a positive"),
    ("db-metric", lambda p: (lambda d, r, t: d.record_result(r, t, "", 0, 1.0))(*_db(p)), TypeError,
     r"metric must be a non-empty string"),
    ("db-step", lambda p: (lambda d, r, t: d.record_result(r, t, "psnr", -1, 1.0))(*_db(p)), TypeError,
     r"step must be an int >= 0"),
    ("db-value-nan", lambda p: (lambda d, r, t: d.record_result(r, t, "psnr", 0, float("nan")))(*_db(p)), ValueError,
     r"value must not be NaN"),
    ("db-run_id", lambda p: (lambda d, r, t: d.record_result(0, t, "psnr", 0, 1.0))(*_db(p)), TypeError,
     r"run_id must be a positive int id"),
    ("db-unknown-run", lambda p: (lambda d, r, t: d.record_result(r + 5, t, "psnr", 0, 1.0))(*_db(p)), ValueError,
     r"rows refer to a run_id or task_id not in the database"),
    ("db-algorithm", lambda p: _db(p)[0].add_run("", "conv"), TypeError, r"algorithm must be a non-empty string"),

    # --- widgets (ipywidgets is a dependency of the kit)
    ("widget-task-sources", lambda p: _widget("TaskExplorer")({}), ValueError, r"sources must hold at least one"),
    ("widget-task-shots", lambda p: _widget("TaskExplorer")(_images(), shots=0), ValueError, r"shots must be >= 1"),
    ("widget-task-severity", lambda p: _widget("TaskExplorer")(_images(), severity=2.0), ValueError,
     r"severity must be in \[0, 1\]"),
    ("widget-generation-fn", lambda p: _widget("GenerationExplorer")("sampler", 3), TypeError,
     r"sample_fn must be callable"),
    ("widget-generation-classes", lambda p: _widget("GenerationExplorer")(lambda c, k, s: _images(), 0), ValueError,
     r"classes must be >= 1"),
    ("widget-restoration-images", lambda p: _widget("RestorationExplorer")(lambda i, d, s: {}, 0, ["gaussian_noise"]),
     ValueError, r"images must be >= 1"),
    ("widget-live-every", lambda p: _widget("LiveMetaTrainingPlot")(every=0), ValueError, r"every must be >= 1"),
    ("widget-adaptation-results", lambda p: _widget("AdaptationExplorer")({"clean": _images(1)[0]}), ValueError,
     r"results must hold 'degraded'"),

    # --- experiment builders
    ("experiment-name", lambda p: build_experiment("dehaze"), ValueError, r"experiment must be one of"),
    ("experiment-algorithm", lambda p: build_experiment("denoise", algorithm="sgd"), ValueError,
     r"algorithm must be one of"),
    ("experiment-seed", lambda p: build_experiment("denoise", seed=-1), ValueError, r"seed must be >= 0"),
    ("generation-config-ways", lambda p: generation_config("fast", ways=1), ValueError, r"ways must be >= 2"),
    ("generation-config-lr", lambda p: generation_config("fast", meta_lr=0.0), ValueError, r"meta_lr must be > 0"),
    ("meta-training-parts-name", lambda p: restoration.meta_training_parts(
        "restoration_denoise_joint", restoration_config("denoising", "fast")), ValueError,
     r"name must be a meta-trained checkpoint, one of \[.*got 'restoration_denoise_joint'"),
    ("generation-parts-method", lambda p: generation_meta_training_parts("joint", generation_config("fast")),
     ValueError, r"method must be one of"),
    ("pretrained-profile", lambda p: load_pretrained("restoration_denoise_maml", profile="gpu"), ValueError,
     r"profile must be one of \['fast', 'full'\] for checkpoint 'restoration_denoise_maml', got 'gpu'"),
    ("meta-lr-schedule", lambda p: meta_train(MAML(ConvRestorer(1, 8, 2)), lambda n, g: None, lambda m, b: 0,
                                              MetaTrainConfig(iterations=1, meta_lr_schedule="linear")), ValueError,
     r"meta_lr_schedule must be one of \('constant', 'cosine'\), got 'linear'"),
    # --- tasks hold their query out, splits do not lie
    ("tasks-source-too-small", lambda p: RestorationTasks(torch.rand(8, 1, 16, 16), "gaussian_noise", 4, 5),
     ValueError, r"source holds 8 images, fewer than shots \+ queries = 4 \+ 5 = 9.*lower shots or queries"),
    ("tasks-class-source-too-small", lambda p: RestorationTasks(_class_source(2, 3), "gaussian_noise", 4, 4),
     ValueError, r"source holds 6 images, fewer than shots \+ queries = 4 \+ 4"),
    ("tasks-split-vs-degradation", lambda p: _restoration_tasks(degradations=GaussianNoise("train"), split="test"),
     ValueError, r"split='test' but degradation GaussianNoise\(.*\) was built with split='train'"),
    ("tasks-split-vs-source", lambda p: _restoration_tasks(source=photos("test", patch_size=16), split="train"),
     ValueError, r"split='train' but the source holds 'test' images"),
    ("tasks-split-vs-both", lambda p: RestorationTasks(photos("test", patch_size=16), GaussianNoise("train"), 2, 2,
                                                       split="test"),
     ValueError, r"split='test' but degradation GaussianNoise.* split='train'"),
    # --- a user's degradation is checked where it is applied
    ("degradation-nan", lambda p: _apply_user(_NaNs), ValueError, r"_NaNs.degrade returned NaN or Inf values"),
    ("degradation-uint8", lambda p: _apply_user(_Bytes), TypeError,
     r"_Bytes.degrade returned dtype torch.uint8 for torch.float32 images; work on the \[0, 1\] float images"),
    ("degradation-float64", lambda p: _apply_user(_Doubles), TypeError,
     r"_Doubles.degrade returned dtype torch.float64 for torch.float32 images; return out.to\(clean.dtype\)"),
    ("degradation-0-255", lambda p: _apply_user(_Scale255), ValueError,
     r"_Scale255.degrade returned values in \[.*\] before clamping, outside \[-4, 5\].*divide 0-255 values by 255"),
    ("degradation-misspelt-param", lambda p: _apply_user(_Typo), ValueError,
     r"_Typo.degrade read params\['amout'\], but _Typo has no parameter 'amout'; its parameters are \['amount'\]"),
    ("degradation-shape", lambda p: _apply_user(_Cropper), ValueError,
     r"_Cropper.degrade returned shape \(2, 1, 15, 15\), expected \(2, 1, 16, 16\)"),
    ("degradation-global-rng", lambda p: _register_global_rng(), ValueError,
     r"GlobalNoise.degrade gave different outputs for the same generator.*generator=\.\.\."),
    ("degradation-params-unknown", lambda p: _apply(_images(), {"sigma": 0.1, "sigmaa": 0.2}), ValueError,
     r"params has unknown name\(s\) \['sigmaa'\] for GaussianNoise; its parameters are \['sigma'\]"),
    # --- resume that would not resume
    ("train-resume-missing-folder", lambda p: _train(resume=True, checkpoint_dir=p / "typo"), ValueError,
     r"resume=True but checkpoint_dir '.*typo' does not exist.*resume='if_present'"),
    ("train-resume-empty-folder", lambda p: _train(resume=True, checkpoint_dir=_empty_folder(p)), ValueError,
     r"resume=True but checkpoint_dir '.*run' holds no checkpoint"),
    ("train-resume-value", lambda p: _train(resume="yes", checkpoint_dir=p), ValueError,
     r"resume must be False, True or 'if_present', got 'yes'"),
    # --- what torch would report deep inside, named at the public function
    ("adapt-float64", lambda p: _learner().adapt(tuple(t.double() for t in _task().support), _mse), TypeError,
     r"support\[0\] has dtype torch.float64 but the model's parameters are torch.float32"),
    ("adapt-uint8", lambda p: _learner().adapt(((_task().support[0] * 255).to(torch.uint8), _task().support[1]),
                                               _mse), TypeError,
     r"support\[0\] is a uint8 tensor .*support\[0\].float\(\) / 255"),
    ("adapt-4-inputs-3-targets", lambda p: _learner().adapt((_images(4, size=8), _images(3, size=8)), _mse),
     ValueError, r"support tensors must hold the same number of examples.*support\[0\] has 4, support\[1\] has 3"),
    ("adapt-loss-not-scalar", lambda p: _learner().adapt(_task().support, lambda m, b: (m(b[0]) - b[1]) ** 2),
     ValueError, r"loss_fn must return a scalar tensor .*got shape \(2, 1, 8, 8\)"),
    ("adapt-empty-support", lambda p: _learner().adapt((_images(0, size=8), _images(0, size=8)), _mse),
     ValueError, r"support is empty \(0 examples"),
    ("meta-loss-not-scalar", lambda p: _learner().meta_loss([_task()], lambda m, b: (m(b[0]) - b[1]) ** 2),
     ValueError, r"loss_fn must return a scalar tensor"),
    ("meta-loss-float64", lambda p: _learner().meta_loss(
        [Task(tuple(t.double() for t in _task().support), tuple(t.double() for t in _task().query))], _mse),
     TypeError, r"tasks.support\[0\] has dtype torch.float64"),
    ("model-float64-input", lambda p: ConvRestorer(1, 4, 2)(_images(2).double()), TypeError,
     r"x has dtype torch.float64 but this ConvRestorer computes in torch.float32"),
    ("model-uint8-input", lambda p: ConvRestorer(1, 4, 2)((_images(2) * 255).to(torch.uint8)), TypeError,
     r"x has dtype torch.uint8 .* x.float\(\) / 255"),
    ("joint-pretrain-loss-not-scalar", lambda p: joint_pretrain(ConvRestorer(1, 4, 2), _Tasks(),
                                                                 lambda m, b: (m(b[0]) - b[1]) ** 2, 1, meta_batch=1,
                                                                 progress=False),
     ValueError, r"loss_fn must return a scalar tensor"),
    ("scratch-model-instance", lambda p: scratch_baseline(ConvRestorer(1, 4, 2), _task().support, _mse, 1, 0.01),
     TypeError, r"model_factory must be a callable returning a fresh nn.Module .*got an instance of ConvRestorer"),
    # --- the meta-database stays inside its folder
    ("db-artefact-escapes", _planted_artefact, ValueError,
     r"refusing artefact 1: its recorded path '../../elsewhere/w.safetensors' resolves to .* outside the artefact "
     r"folder"),
]


@pytest.mark.parametrize("call, error, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(call, error, pattern, tmp_path, monkeypatch):
    assert issubclass(error, (ValueError, TypeError))
    monkeypatch.setenv("METALEARN_KIT_CACHE_DIR", str(tmp_path / "cache"))  # nothing is read or written elsewhere
    with pytest.raises(error) as info:
        call(tmp_path)
    assert re.search(pattern, str(info.value)), f"message {str(info.value)!r} does not match {pattern!r}"


# ------------------------------------------------------------------ the command line

CLI_CASES = [
    ("no-command", [], r"COMMAND"),
    ("unknown-command", ["frobnicate"], r"invalid choice: 'frobnicate'"),
    ("bench-restoration-experiment", ["bench", "restoration", "--experiments", "dehazing"], r"--experiments"),
    ("bench-restoration-seed", ["bench", "restoration", "--seed", "one"], r"--seed: invalid int value"),
    ("bench-restoration-profile", ["bench", "restoration", "--profile", "huge"], r"--profile: invalid choice"),
    ("bench-generation-threads", ["bench", "generation", "--threads", "0"], r"--threads must be >= 1, got 0"),
    ("bench-generation-eval-tasks", ["bench", "generation", "--eval-tasks", "0"], r"eval_tasks must be >= 1"),
    ("bench-generation-method", ["bench", "generation", "--methods", "gan2"], r"--methods: invalid choice"),
    ("bench-meta-step-repeats", ["bench", "meta-step", "--repeats", "0"], r"--repeats must be >= 1"),
    ("bench-meta-step-threads", ["bench", "meta-step", "--threads", "0"], r"--threads must be >= 1"),
    ("bench-meta-step-batch", ["bench", "meta-step", "--meta-batch", "0"], r"--meta-batch values must be >= 1"),
    ("db-action", ["db", "frobnicate"], r"action: invalid choice"),
    ("db-limit", ["db", "list", "--limit", "0"], r"--limit must be >= 1"),
    ("db-not-sqlite", ["db", "list", "--path", "{notes}"], r"is not a SQLite database"),
    ("db-show-run", ["db", "show", "abc", "--path", "{db}"], r"RUN must be an integer run id"),
    ("db-export-target", ["db", "export"], r"'export' needs a CSV file path"),
    ("pretrain-name", ["pretrain", "no_such_checkpoint"], r"name must be a registered checkpoint"),
    ("pretrain-empty", ["pretrain"], r"names is empty"),
    ("pretrain-profile", ["pretrain", "restoration_denoise_maml", "--profile", "huge"], r"--profile: invalid choice"),
    ("notebooks-profile", ["notebooks", "execute", "--profile", "turbo"], r"--profile: invalid choice"),
    ("train-experiment", ["train", "dehaze", "--out", "{out}"], r"experiment must be one of"),
    ("train-resume-nothing", ["train", "denoise", "--out", "{out}", "--resume"],
     r"--resume but --out '.*run' holds no run .*--resume-if-present"),
    ("train-resume-both", ["train", "denoise", "--out", "{out}", "--resume", "--resume-if-present"],
     r"--resume-if-present cannot be combined with --resume"),
]


@pytest.mark.parametrize("argv, pattern", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_arguments_exit_2_naming_the_argument(argv, pattern, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METALEARN_KIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("METALEARN_KIT_DB", str(tmp_path / "default.sqlite"))
    db = tmp_path / "meta.sqlite"
    MetaDatabase(db).close()
    fill = {"notes": str(_text_file(tmp_path)), "db": str(db), "out": str(tmp_path / "run")}
    argv = [a.format(**fill) for a in argv]
    try:
        code = cli_main(argv)
    except SystemExit as stop:  # argparse's own errors exit here
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, f"exit code {code}, stderr {err!r}"
    assert re.search(pattern, err), f"stderr {err!r} does not match {pattern!r}"
    assert "Traceback" not in err


# ------------------------------------------------------------------ cache entries that are not what they claim

def test_corrupted_or_pickled_cache_entry_is_rebuilt_not_loaded(tmp_path):
    """A truncated cache file, or one holding pickled objects (code that would run on load), is treated as
    missing -- the caller rebuilds it -- and a rebuilt entry replaces it atomically."""
    import numpy as np

    from metalearn_kit.data._cache import load_npz, save_npz_atomic

    path = tmp_path / "entry.npz"
    save_npz_atomic(path, pixels=np.arange(12, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:40])  # truncated under the final name
    assert load_npz(path) is None
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    np.savez(path, pixels=np.array([Payload()], dtype=object))  # needs pickle to load
    assert load_npz(path) is None and not marker.exists()
    save_npz_atomic(path, pixels=np.arange(12, dtype=np.uint8))
    assert np.array_equal(load_npz(path)["pixels"], np.arange(12, dtype=np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["entry.npz"]  # no temporary file left behind


# ------------------------------------------------------------------ numerical safety of the baselines
# (the meta-learners' inner and outer loops: tests/test_meta_engine.py::test_nan_guard_names_step_and_learning_rate
#  and tests/test_meta_train.py::test_time_budget_and_divergence_guard)

def test_finetune_divergence_names_the_step_and_learning_rate():
    from metalearn_kit.meta import DivergenceError

    model, support = ConvRestorer(width=4, depth=2), _task().support
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(DivergenceError, match=r"support loss became (inf|nan) at inner step [1-9] .*lr=1e\+20"):
        finetune(model, support, _mse, steps=6, lr=1e20)
    # the last update is checked too: one step that blows the weights up is not returned as an adapted model
    with pytest.raises(DivergenceError, match=r"weights became NaN/Inf at inner step 0 \(0-based, of 1\).*lr=1e\+36"):
        finetune(model, support, lambda m, b: 1e8 * _mse(m, b), steps=1, lr=1e36)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))  # the model itself is untouched
    with pytest.raises(ValueError, match=r"lr must be finite"):
        finetune(model, support, _mse, steps=1, lr=float("inf"))


def test_joint_pretrain_divergence_names_the_iteration_and_learning_rate():
    from metalearn_kit.meta import DivergenceError, joint_pretrain

    class Tasks:
        def sample_batch(self, n, generator):
            from metalearn_kit.tasks import stack_tasks

            return stack_tasks([_task() for _ in range(n)])

    expected = r"joint pretraining loss became (inf|nan) at iteration [2-9] \(lr=1e\+30\)"
    with pytest.raises(DivergenceError, match=expected):
        joint_pretrain(ConvRestorer(width=4, depth=2), Tasks(), _mse, iterations=5, meta_batch=1, lr=1e30,
                       progress=False)
