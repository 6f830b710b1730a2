from dataclasses import fields, replace

import pytest
import torch

from metalearn_kit import config


def test_device_defaults_to_cpu_without_accelerators(monkeypatch):
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(config, "_mps_available", lambda: False)
    assert config.get_device() == torch.device("cpu")


def test_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(config, "_mps_available", lambda: True)
    assert config.get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.get_device().type == "mps"


def test_device_env_overrides(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(config.DEVICE_ENV, "cpu")
    assert config.get_device() == torch.device("cpu")


def test_bad_device_names_the_source(monkeypatch):
    monkeypatch.setenv(config.DEVICE_ENV, "tpu-please")
    with pytest.raises(ValueError, match="METALEARN_KIT_DEVICE"):
        config.get_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA"):
        config.get_device("cuda")


def test_profile_default_is_fast_on_every_device(monkeypatch):
    """A GPU does not switch to ``full`` by itself: Colab's notebooks start from the shipped fast checkpoints."""
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    monkeypatch.delenv(config.DEVICE_ENV, raising=False)
    for cuda in (True, False):
        for mps in (True, False):
            monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
            monkeypatch.setattr(config, "_mps_available", lambda mps=mps: mps)
            assert config.get_profile() == "fast"
    assert config.get_profile("full") == "full"


def test_profile_env_and_argument(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "full")
    assert config.get_profile() == "full"
    assert config.get_profile("fast") == "fast"
    monkeypatch.setenv(config.PROFILE_ENV, "medium")
    with pytest.raises(ValueError, match="METALEARN_KIT_PROFILE"):
        config.get_profile()
    with pytest.raises(ValueError, match="profile argument"):
        config.get_profile("huge")


def test_profile_sizes_picks_the_active_entry(monkeypatch):
    table = {"fast": 1, "full": 2}
    monkeypatch.setenv(config.PROFILE_ENV, "fast")
    assert config.profile_sizes(table) == 1
    assert config.profile_sizes(table, "full") == 2
    with pytest.raises(ValueError, match="missing"):
        config.profile_sizes({"fast": 1})


def test_seeding_and_generators():
    a = config.seed_everything(3)
    b = config.seed_everything(3)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    assert torch.equal(torch.rand(3, generator=config.make_generator(7)),
                       torch.rand(3, generator=config.make_generator(7)))
    with pytest.raises(ValueError, match="seed"):
        config.seed_everything(-1)
    with pytest.raises(TypeError, match="generator"):
        config.make_generator("seven")


# -- the config dataclasses: every field typed, checked on construction and by `replace` ---------------------------

def _restoration_configs():
    from metalearn_kit.recipes.restoration_configs import RESTORATION_EXPERIMENTS, restoration_config

    return [restoration_config(experiment, profile) for experiment in RESTORATION_EXPERIMENTS
            for profile in ("fast", "full")]


def test_every_restoration_config_field_can_be_replaced():
    """``inner_grad_clip`` and ``meta_lr_schedule`` are fields like the others: replaceable, and recorded."""
    for cfg in _restoration_configs():
        clipped = replace(cfg, inner_grad_clip=0.5, meta_lr_schedule="cosine")
        assert (clipped.inner_grad_clip, clipped.meta_lr_schedule) == (0.5, "cosine")
        assert clipped.as_dict()["inner_grad_clip"] == 0.5 and clipped.training_part()["meta_lr_schedule"] == "cosine"
        assert replace(cfg, inner_grad_clip=None).inner_grad_clip is None  # None: no clipping
    # the SIREN experiment keeps its own defaults: no clipping, a cosine meta learning rate
    from metalearn_kit.recipes.restoration_configs import restoration_config

    siren, denoise = restoration_config("image_fitting", "fast"), restoration_config("denoising", "fast")
    assert (siren.inner_grad_clip, siren.meta_lr_schedule) == (None, "cosine")
    assert (denoise.inner_grad_clip, denoise.meta_lr_schedule) == (1.0, "constant")


def _bad_value(value):
    """A value of the same kind as ``value`` that no config accepts."""
    if isinstance(value, list):
        return []
    if isinstance(value, str):
        return "no-such-schedule"
    if isinstance(value, int) and not isinstance(value, bool):
        return 0
    return -1.0


def test_every_restoration_field_is_checked_by_name():
    for cfg in _restoration_configs():
        for field in fields(cfg):
            value = getattr(cfg, field.name)
            if value is None:
                continue
            with pytest.raises(ValueError, match=field.name):
                replace(cfg, **{field.name: _bad_value(value)})
    from metalearn_kit.recipes.restoration_configs import restoration_config

    with pytest.raises(ValueError, match="scale must be >= 2"):
        restoration_config("super_resolution", "fast", {"scale": 1})
    with pytest.raises(ValueError, match=r"kernel_sigma must be a range \[low, high\]"):
        restoration_config("super_resolution", "fast", {"kernel_sigma": [1.6, 0.4]})
    with pytest.raises(TypeError, match="width must be an int"):
        restoration_config("denoising", "fast", {"width": 32.0})


@pytest.mark.parametrize("make_bad, field", [
    (lambda: _generation().generation_config("fast", meta_lr=0.0), "meta_lr"),
    (lambda: replace(_generation().generation_config("fast"), ways=1), "ways"),
    (lambda: replace(_generation().generation_config("fast"), shots=[]), "shots"),
    (lambda: _cavia().CaviaConfig(context_dim=0), "context_dim"),
    (lambda: _cgan().CGANConfig(ema_decay=1.0), "ema_decay"),
    (lambda: replace(_operator_config(), joint_iterations=1), "joint_iterations"),
    (lambda: replace(_operator_config(), channels=2), "channels"),
    (lambda: replace(_notebook_denoiser().notebook_denoiser_config("fast"), inner_lr=0.0), "inner_lr"),
    (lambda: _meta_train_config()(iterations=0, meta_batch=4, meta_lr=1e-3), "iterations"),
    (lambda: _meta_train_config()(iterations=10, meta_batch=4, meta_lr=1e-3, meta_lr_schedule="linear"),
     "meta_lr_schedule"),
], ids=["generation-override", "generation-replace", "generation-list", "cavia", "cgan", "operator-joint",
        "operator-channels", "notebook-denoiser", "meta-train-config", "meta-train-config-schedule"])
def test_each_config_refuses_a_bad_value_naming_the_field(make_bad, field):
    with pytest.raises(ValueError, match=field):
        make_bad()


def _generation():
    from metalearn_kit.recipes import generation

    return generation


def _cavia():
    from metalearn_kit.recipes import generation_cavia

    return generation_cavia


def _cgan():
    from metalearn_kit.recipes import generation_cgan

    return generation_cgan


def _notebook_denoiser():
    from metalearn_kit.recipes import notebook_denoiser

    return notebook_denoiser


def _meta_train_config():
    from metalearn_kit.meta import MetaTrainConfig

    return MetaTrainConfig


def _operator_config():
    from metalearn_kit.recipes.operator_families import operator_family

    return operator_family("tone_curve").config("fast")


def test_every_shipped_checkpoint_records_a_config_that_still_builds():
    """Each shipped file's recorded ``config`` rebuilds (through the entry's ``from_record``) into the registered
    config, and matches it on the fields that determine the weights, so ``load_or_train`` takes the shipped file
    instead of training again -- also for files recorded before a field existed (the restoration files do not name
    ``inner_grad_clip`` or ``meta_lr_schedule``)."""
    from metalearn_kit import checkpoints, pretrained

    names = sorted(pretrained.CHECKPOINTS)
    assert names
    for name in names:
        entry = pretrained.REGISTRY[name]
        _, meta = checkpoints.load(pretrained.CHECKPOINT_DIR / entry.file)
        record = meta["config"]
        assert entry.weights_key(record) == entry.weights_key(entry.to_record(entry.config)), name
        if entry.from_record is not None:
            rebuilt = entry.from_record(record)
            assert type(rebuilt) is type(entry.config), name
            assert entry.weights_key(entry.to_record(rebuilt)) == entry.weights_key(record), name
    # a record without those two fields was trained with the class defaults, and a different value does not match
    entry = pretrained.REGISTRY["restoration_denoise_maml"]
    _, meta = checkpoints.load(pretrained.CHECKPOINT_DIR / entry.file)
    assert "inner_grad_clip" not in meta["config"]
    assert entry.weights_key(meta["config"]) != entry.weights_key(replace(entry.config, inner_grad_clip=0.5).as_dict())
    assert entry.weights_key({}) != entry.weights_key(entry.to_record(entry.config))
