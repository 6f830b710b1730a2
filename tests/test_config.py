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
