"""Widgets without a browser: they build, their controls redraw, scrubbing is cached, bad input is refused."""

import math
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("ipywidgets")

from metalearn_kit.meta import MAML  # noqa: E402
from metalearn_kit.models.conv import ConvRestorer  # noqa: E402
from metalearn_kit.tasks import Degradation, RestorationTasks  # noqa: E402
from metalearn_kit.widgets import (  # noqa: E402
    AdaptationExplorer,
    GenerationExplorer,
    LiveMetaTrainingPlot,
    RestorationExplorer,
    TaskExplorer,
    adaptation_results,
    check_adaptation_results,
)
from metalearn_kit.widgets.severity import SeverityKnob  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def shown(explorer):
    """The bytes the explorer's Image widget holds (ipywidgets 8 keeps a memoryview, 7 bytes)."""
    return bytes(explorer.image.value)


@pytest.fixture(scope="module")
def source():
    return torch.rand(30, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def mse_loss(model, batch):
    degraded, clean = batch
    return torch.nn.functional.mse_loss(model(degraded), clean)


def synthetic_results(steps=4, methods=("maml", "scratch")):
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(1, 12, 12, generator=g)
    out = {"degraded": (clean + 0.3 * torch.randn(1, 12, 12, generator=g)).clamp(0, 1), "clean": clean}
    for m, name in enumerate(methods):
        # outputs move from the degraded image towards the clean one, at a method-dependent speed
        frames = [(out["degraded"] + (clean - out["degraded"]) * min(1.0, k * (m + 1) / (2 * steps)))
                  for k in range(steps + 1)]
        out[name] = {"images": frames, "psnr": [15.0 + k * (m + 1) for k in range(steps + 1)]}
    return out


def test_ipywidgets_major_version_is_the_one_this_run_is_for():
    """``scripts/kit test-ipywidgets7`` sets ``METALEARN_KIT_EXPECT_IPYWIDGETS=7``: prove that run really had 7."""
    import ipywidgets

    major = ipywidgets.__version__.split(".")[0]
    expected = os.environ.get("METALEARN_KIT_EXPECT_IPYWIDGETS")
    if expected is None:
        assert major in {"7", "8"}, f"the widgets are tested under ipywidgets 7 and 8, not {ipywidgets.__version__}"
    else:
        assert major == expected, f"this run is for ipywidgets {expected}, got {ipywidgets.__version__}"


def test_importing_the_package_does_not_import_ipywidgets():
    code = ("import sys, metalearn_kit, metalearn_kit.widgets; "
            "bad = [m for m in ('ipywidgets', 'matplotlib', 'IPython') if m in sys.modules]; "
            "assert not bad, bad; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


# ---------------------------------------------------------------------------------------------- severity
def test_severity_knob_runs_from_mildest_training_to_harshest_test_level():
    noise = SeverityKnob("gaussian_noise")
    assert noise.values(0.0) == {"sigma": 0.05} and noise.values(1.0) == {"sigma": 0.3}
    assert noise.level(0.0) == "train" and noise.level(1.0) == "test" and noise.level(0.5) is None
    assert "meta-test level" in noise.describe(1.0)
    jpeg = SeverityKnob("jpeg")  # lower quality is harsher: the knob lowers it, as whole numbers
    assert jpeg.values(0.0) == {"quality": 70} and jpeg.values(1.0) == {"quality": 5}
    assert isinstance(jpeg.values(0.37)["quality"], int)
    sr = SeverityKnob("super_resolution")  # only the listed scales: 3 would not divide 16/28-pixel patches
    assert {sr.values(s)["scale"] for s in (0.0, 0.2, 0.45, 0.55, 0.8, 1.0)} == {2, 4}
    built = noise.degradation(0.8)
    assert built.ranges["sigma"] == pytest.approx(0.25) and built.split == "test"
    with pytest.raises(ValueError, match="severity"):
        noise.values(1.5)


class Speckle(Degradation, register=False):
    """Multiplicative noise: a user-defined family, passed to the explorer as an instance."""

    name = "speckle_test"
    default_ranges = {"train": {"amount": (0.1, 0.6)}}
    param_limits = {"amount": (0.0, 1.0)}

    def degrade(self, clean, params, generator):
        return clean * (1 + params["amount"] * self.randn(clean.shape, generator, clean))


# ---------------------------------------------------------------------------------------------- task explorer
def test_task_explorer_redraws_when_the_family_changes(source):
    explorer = TaskExplorer(source, families=["gaussian_noise", "gaussian_blur", "inpainting"], shots=3)
    assert explorer.family.description == "family" and explorer.severity.continuous_update is False
    first = shown(explorer)
    assert first.startswith(PNG_MAGIC) and explorer.task.info["family"] == "gaussian_noise"
    explorer.family.value = "gaussian_blur"
    assert explorer.last_error is None
    assert shown(explorer) != first and explorer.task.info["family"] == "gaussian_blur"
    assert "sigma" in explorer.params.value


def test_task_explorer_severity_shots_and_new_task(source):
    explorer = TaskExplorer(source, families=["gaussian_noise"], shots=2, severity=0.0)
    assert explorer.task.info["params"]["sigma"] == pytest.approx(0.05)
    before = shown(explorer)
    explorer.severity.value = 1.0
    assert explorer.task.info["params"]["sigma"] == pytest.approx(0.3) and shown(explorer) != before
    explorer.shots.value = 4
    assert explorer.task.shots == 4
    support = explorer.task.support[1].clone()
    explorer.new_task.click()
    assert explorer.seed == 1 and not torch.equal(explorer.task.support[1], support)
    # same controls and seed -> the same task
    assert torch.equal(explorer.make_task().support[0], explorer.task.support[0])


def test_task_explorer_takes_a_user_defined_degradation_and_several_sources(source):
    explorer = TaskExplorer({"noise": source, "flat": torch.full((16, 1, 16, 16), 0.5)},
                            families=[Speckle(), "gaussian_noise"], severity=1.0)
    assert list(explorer.knobs) == ["speckle_test", "gaussian_noise"]
    assert explorer.task.info["params"]["amount"] == pytest.approx(0.6)
    explorer.severity.value = 0.0
    assert explorer.task.info["params"]["amount"] == pytest.approx(0.1)
    before = shown(explorer)
    explorer.source.value = "flat"
    assert shown(explorer) != before and explorer.task.support[1].eq(0.5).all()


def test_task_explorer_default_families_and_bad_input(source):
    explorer = TaskExplorer(source)
    assert "gaussian_noise" in explorer.knobs and "kernel_blur" not in explorer.knobs  # needs kernels
    with pytest.raises(ValueError, match="families"):
        TaskExplorer(source, families=[])
    with pytest.raises(ValueError, match="sources"):
        TaskExplorer({}, families=["gaussian_noise"])
    with pytest.raises(ValueError, match="shots"):
        TaskExplorer(source, families=["gaussian_noise"], shots=0)
    with pytest.raises(ValueError, match="twice"):
        TaskExplorer(source, families=["gaussian_noise", "gaussian_noise"])


# ---------------------------------------------------------------------------------------------- adaptation explorer
def test_adaptation_explorer_step_slider_changes_image_and_label():
    explorer = AdaptationExplorer(synthetic_results(steps=4))
    assert explorer.slider.description == "step" and explorer.slider.continuous_update is False
    assert explorer.slider.max == 4 and explorer.slider.value == 0
    first_png, first_text = shown(explorer), explorer.label.value
    assert first_png.startswith(PNG_MAGIC) and "step 0: maml 15.00 dB, scratch 15.00 dB" in first_text
    explorer.slider.value = 3
    assert shown(explorer) != first_png
    assert "step 3: maml 18.00 dB, scratch 21.00 dB" in explorer.label.value
    # the frames were rendered once: showing a step again sends the very same bytes, no new drawing
    assert explorer.png_at(3) is explorer.png_at(3) is explorer.png and shown(explorer) == explorer.png
    assert len(explorer._cache) == 5
    titles = [ax.get_title() for ax in explorer.figure(2).axes]
    assert "scratch, step 2\n19.00 dB" in titles and "clean" in titles


def test_adaptation_explorer_new_results_and_lazy_rendering():
    explorer = AdaptationExplorer(synthetic_results(steps=2), prerender=False, step=2)
    assert len(explorer._cache) == 1 and "step 2:" in explorer.label.value
    explorer.set_results(synthetic_results(steps=6, methods=("a", "b", "c")), step=5)
    assert explorer.slider.max == 6 and explorer.slider.value == 5 and "step 5: a" in explorer.label.value


@pytest.mark.parametrize("change, pattern", [
    (lambda r: {"degraded": r["degraded"], "clean": r["clean"]}, "no method"),
    (lambda r: {**r, "scratch": {"images": r["scratch"]["images"][:-1], "psnr": r["scratch"]["psnr"][:-1]}},
     "same number of steps"),
    (lambda r: {**r, "maml": {"images": r["maml"]["images"], "psnr": r["maml"]["psnr"][:-1]}}, r"results\['maml'\]"),
    (lambda r: {k: v for k, v in r.items() if k != "degraded"}, "degraded"),
    (lambda r: {**r, "maml": {"images": [torch.rand(1, 5, 5)] * 5, "psnr": r["maml"]["psnr"]}}, "shape"),
    (lambda r: {**r, "maml": {"images": [], "psnr": []}}, "non-empty"),
    (lambda r: {**r, "maml": {"images": r["maml"]["images"], "psnr": [math.nan] * 5}}, "psnr"),
    (lambda r: {**r, "maml": [1, 2]}, r"results\['maml'\]"),
])
def test_bad_adaptation_results_raise_value_error_naming_results(change, pattern):
    bad = change(synthetic_results(steps=4))
    with pytest.raises(ValueError, match=pattern) as info:
        AdaptationExplorer(bad)
    assert "results" in str(info.value)


def test_adaptation_results_with_a_meta_learner_and_plain_finetuning(source):
    torch.manual_seed(0)
    task = RestorationTasks(source, "gaussian_noise", shots=3, queries=2).sample(0)
    maml_model, scratch_model = ConvRestorer(width=6, depth=3), ConvRestorer(width=6, depth=3)
    weights = {k: v.clone() for k, v in scratch_model.state_dict().items()}
    results = adaptation_results({"maml": MAML(maml_model, inner_lr=0.05), "scratch": (scratch_model, 0.01, "adam")},
                                 task, mse_loss, steps=3, query_index=1)
    data = check_adaptation_results(results)
    assert data["steps"] == 3 and list(data["methods"]) == ["maml", "scratch"]
    assert torch.equal(results["degraded"], task.query[0][1]) and torch.equal(results["clean"], task.query[1][1])
    from metalearn_kit.evaluation.metrics import psnr

    with torch.no_grad():
        step0 = scratch_model(task.query[0]).clamp(0, 1)
    assert results["scratch"]["psnr"][0] == pytest.approx(float(psnr(step0, task.query[1])), abs=1e-4)
    assert torch.allclose(results["scratch"]["images"][0], step0[1])
    assert not torch.equal(results["scratch"]["images"][3], results["scratch"]["images"][0])  # it adapted
    assert all(torch.equal(v, scratch_model.state_dict()[k]) for k, v in weights.items())  # model untouched
    assert len(results["maml"]["support_loss"]) == 3
    explorer = AdaptationExplorer(results)
    explorer.slider.value = 3
    assert "step 3: maml" in explorer.label.value


def test_the_input_psnr_is_computed_as_the_methods_psnr(source):
    """The methods' PSNR is the query-set mean; the explorer's "degraded input" line is that same mean, not the
    shown query image's PSNR (an identity method then sits exactly on the input line)."""
    from metalearn_kit.evaluation.metrics import psnr

    task = RestorationTasks(source, "gaussian_noise", shots=2, queries=4).sample(3)
    identity = ConvRestorer(width=4, depth=2)
    with torch.no_grad():
        identity.head.weight.zero_()  # the residual net outputs its input
    results = adaptation_results({"identity": (identity, 1e-9)}, task, mse_loss, steps=1, query_index=2)
    mean_input = float(psnr(task.query[0], task.query[1]))
    shown_input = float(psnr(task.query[0][2:3], task.query[1][2:3]))
    assert abs(mean_input - shown_input) > 0.01  # the two ways differ on this task, so the test can tell them apart
    assert results["degraded_psnr"] == pytest.approx(mean_input, abs=1e-6)
    assert results["identity"]["psnr"][0] == pytest.approx(mean_input, abs=1e-4)
    explorer = AdaptationExplorer(results)
    assert explorer.text_at(0).endswith(f"(degraded input {mean_input:.2f} dB)")
    # hand-built results without it: the shown image's PSNR, as before
    plain = {k: v for k, v in results.items() if k != "degraded_psnr"}
    assert AdaptationExplorer(plain).text_at(0).endswith(f"(degraded input {shown_input:.2f} dB)")
    with pytest.raises(ValueError, match=r"results\['degraded_psnr'\]"):
        AdaptationExplorer({**results, "degraded_psnr": "13 dB"})


def test_adaptation_results_bad_input(source):
    task = RestorationTasks(source, "gaussian_noise", shots=2, queries=2).sample(0)
    model = ConvRestorer(width=4, depth=2)
    with pytest.raises(ValueError, match="methods"):
        adaptation_results({}, task, mse_loss, steps=2)
    with pytest.raises(ValueError, match="steps"):
        adaptation_results({"a": (model, 0.1)}, task, mse_loss, steps=0)
    with pytest.raises(ValueError, match="degraded"):
        adaptation_results({"degraded": (model, 0.1)}, task, mse_loss, steps=1)
    with pytest.raises(TypeError, match=r"methods\['a'\]"):
        adaptation_results({"a": model}, task, mse_loss, steps=1)
    with pytest.raises(ValueError, match="learning rate"):
        adaptation_results({"a": (model, -1.0)}, task, mse_loss, steps=1)


# ---------------------------------------------------------------------------------------------- live plot
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def record(i):
    return {"query_loss_before": 1.0 / i, "query_loss_after": 0.5 / i}


def test_live_plot_throttles_by_iterations_and_by_time():
    clock = FakeClock()
    by_count = LiveMetaTrainingPlot(every=5, min_seconds=0.0, show=False, clock=clock)
    for i in range(1, 13):
        by_count(i, record(i))
    assert by_count.draw_count == 3  # iterations 1, 6, 11
    assert len(by_count.history["iteration"]) == 12 and by_count.png.startswith(PNG_MAGIC)

    by_time = LiveMetaTrainingPlot(every=1, min_seconds=0.5, show=False, clock=clock)
    for i in range(1, 21):
        clock.now = i * 0.1  # 10 iterations per second, redraw at most twice a second
        by_time(i, record(i))
    assert by_time.draw_count == 4  # t = 0.1, 0.6, 1.1, 1.6
    before = by_time.draw_count
    by_time.finish()
    assert by_time.draw_count == before + 1 and by_time.finished


def test_live_plot_final_picture_with_total_and_validation_points():
    plot = LiveMetaTrainingPlot(every=100, min_seconds=100.0, total=6, show=False, clock=FakeClock())
    pngs = []
    for i in range(1, 7):
        rec = record(i)
        if i % 3 == 0:
            rec.update(val_query_loss_before=0.9 / i, val_query_loss_after=0.4 / i)
        plot(i, rec)
        pngs.append(plot.png)
    assert plot.draw_count == 2 and plot.finished and pngs[-1] != pngs[-2]  # first call, then the final one
    assert plot.history["val_iteration"] == [3, 6]
    assert "finished" in plot.figure().axes[0].get_title()
    with pytest.raises(ValueError, match="query_loss_after"):
        plot(7, {"loss": 1.0})
    with pytest.raises(TypeError, match="record"):
        plot(7, [1.0])
    with pytest.raises(ValueError, match="every"):
        LiveMetaTrainingPlot(every=0)


def test_live_plot_as_a_meta_train_callback(source):
    from metalearn_kit.meta.train import MetaTrainConfig, meta_train

    tasks = RestorationTasks(source, "gaussian_noise", shots=2, queries=2)
    plot = LiveMetaTrainingPlot(every=2, min_seconds=0.0, show=False)
    history = meta_train(MAML(ConvRestorer(width=4, depth=2), inner_steps=1), tasks, mse_loss,
                         MetaTrainConfig(iterations=5, meta_batch=2, progress=False), callbacks=[plot])
    assert plot.history["query_loss_after"] == history["query_loss_after"]
    assert plot.draw_count == 3  # iterations 1, 3, 5


# ---------------------------------------------------------------------------------------------- generic explorers
def test_generation_explorer_calls_sample_fn_on_button_press():
    calls = []

    def sample_fn(class_index, shots, steps):
        calls.append((class_index, shots, steps))
        return torch.full((6, 1, 8, 8), (class_index + 1) / 4)

    explorer = GenerationExplorer(sample_fn, classes=["alpha", "beta", "gamma"], shots=3, steps=2,
                                  support_fn=lambda c, k: torch.zeros(k, 1, 8, 8))
    assert not calls and shown(explorer) == b""  # nothing runs before the button
    explorer.class_index.value, explorer.steps.value = 2, 7
    explorer.button.click()
    assert calls == [(2, 3, 7)] and explorer.last_error is None
    assert shown(explorer).startswith(PNG_MAGIC) and "6 samples" in explorer.status.value
    first = shown(explorer)
    explorer.class_index.value = 0
    explorer.button.click()
    assert shown(explorer) != first


def test_generation_explorer_reports_bad_sample_fn_output():
    explorer = GenerationExplorer(lambda c, k, s: torch.rand(8, 8), classes=2)
    explorer.button.click()  # the handler shows the error instead of losing it in the browser console
    assert isinstance(explorer.last_error, ValueError) and "sample_fn output" in explorer.status.value
    assert not explorer.button.disabled
    with pytest.raises(ValueError, match="sample_fn output"):
        explorer.generate()
    with pytest.raises(ValueError, match="classes"):
        GenerationExplorer(lambda c, k, s: None, classes=[])
    with pytest.raises(TypeError, match="sample_fn"):
        GenerationExplorer("not callable", classes=2)


def test_restoration_explorer_runs_restore_fn_and_shows_the_steps():
    calls = []

    def restore_fn(image_index, degradation, steps):
        calls.append((image_index, degradation, steps))
        return synthetic_results(steps=steps, methods=("adapted",))

    explorer = RestorationExplorer(restore_fn, images=["cat", "boat"], degradations=["gaussian_noise", "jpeg"],
                                   steps=3)
    explorer.image_index.value, explorer.degradation.value = 1, "jpeg"
    explorer.button.click()
    assert calls == [(1, "jpeg", 3)] and explorer.last_error is None
    assert explorer.view.slider.value == 3 and "step 3: adapted" in explorer.view.label.value
    explorer.view.slider.value = 1
    assert "step 1: adapted" in explorer.view.label.value
    explorer.steps.value = 5
    explorer.button.click()
    assert explorer.view.slider.max == 5 and explorer.view.slider.value == 5
    with pytest.raises(ValueError, match="degradations"):
        RestorationExplorer(restore_fn, images=2, degradations=[])


# ------------------------------------------------------------------ SIREN fitting and the family explorer
def test_siren_fit_explorer_from_a_meta_learner_and_the_standard_init():
    from metalearn_kit.meta import MetaSGD
    from metalearn_kit.models.siren import Siren
    from metalearn_kit.widgets import SirenFitExplorer, siren_fit_results

    torch.manual_seed(0)
    image = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(1))
    learner = MetaSGD(Siren(1, 16, 2), inner_lr=0.01, inner_steps=2)
    results = siren_fit_results({"meta-init": learner, "standard init": (Siren(1, 16, 2), 1e-3)}, image, steps=3)
    for name in ("meta-init", "standard init"):
        assert len(results[name]["images"]) == 4 and len(results[name]["psnr"]) == 4
        assert results[name]["images"][0].shape == (1, 64, 64)
    assert results["standard init"]["psnr"][3] != results["standard init"]["psnr"][0]  # it fits
    explorer = SirenFitExplorer(results, note="why line")
    first = shown(explorer)
    assert first.startswith(PNG_MAGIC) and "step 0" in explorer.label.value
    explorer.slider.value = 3
    assert shown(explorer) != first and "step 3" in explorer.label.value
    assert "why line" in explorer.note.value
    with pytest.raises(TypeError, match=r"methods\['bad'\]"):
        siren_fit_results({"bad": 3}, image, steps=2)
    with pytest.raises(ValueError, match="steps"):
        siren_fit_results({"standard init": (Siren(1, 16, 2), 1e-3)}, image, steps=0)
    with pytest.raises(ValueError, match="results must be what siren_fit_results returns"):
        SirenFitExplorer({"meta-init": results["meta-init"]})


def test_family_explorer_defaults_to_a_winning_family_and_offers_white_noise(monkeypatch):
    from metalearn_kit.recipes import operator_families, operator_recipe
    from metalearn_kit.widgets import FamilyAdaptationExplorer
    from metalearn_kit.widgets import families as module

    # tiny stand-ins for the checkpoints, so the test does not depend on shipped files or train for minutes
    def tiny(name, role, config, seed=0):  # noqa: ARG001 - the signature of load_model
        from dataclasses import replace

        small = replace(config, width=4, depth=1)
        torch.manual_seed(0)
        return operator_recipe.build_checkpoint(role, small), "trained"

    monkeypatch.setattr(operator_families, "load_model", tiny)
    explorer = FamilyAdaptationExplorer(families=("tone_curve", "colour_cast"), steps=2)
    assert explorer.family.value == "tone_curve" and explorer.explorer.steps == 2
    assert "Why:" in explorer.why.value and "tone curve" in explorer.why.value
    assert explorer.explorer.data["degraded"].shape[-1] >= 64
    explorer.family.value = "colour_cast"
    assert explorer.last_error is None and explorer.explorer.data["degraded"].shape[0] == 3
    assert "colour" in explorer.why.value
    assert module.WHITE_NOISE in module.DEFAULT_FAMILIES and module.DEFAULT_FAMILIES[0] != module.WHITE_NOISE
    with pytest.raises(ValueError, match="families"):
        FamilyAdaptationExplorer(families=("tone_curve", "pink_noise"))
    with pytest.raises(ValueError, match="patch"):
        FamilyAdaptationExplorer(families=("tone_curve",), patch=32)


def test_task_explorer_default_families_fit_the_source_channels(source):
    grey = TaskExplorer(source)
    assert "tone_curve" in grey.knobs and "stripe_noise" in grey.knobs
    assert "colour_cast" not in grey.knobs  # colour-only family, grey source
    assert list(grey.knobs).index("gaussian_noise") < list(grey.knobs).index("tone_curve")  # built-ins first
    colour = TaskExplorer(torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    assert "colour_cast" in colour.knobs
    colour.family.value = "colour_cast"
    assert colour.last_error is None and colour.task.support[0].shape[1] == 3


def test_family_explorer_white_noise_uses_the_denoising_checkpoints():
    from metalearn_kit.widgets import FamilyAdaptationExplorer, family_methods

    parts = family_methods("white_noise", steps=1)
    assert set(parts["methods"]) == {"meta-learned", "joint pretrained"} and parts["meta_learner"] == "MAML"
    assert parts["task"].query[0].shape[-1] == 64 and parts["joint_lr"] in (3e-4, 1e-3, 3e-3)
    explorer = FamilyAdaptationExplorer(families=("white_noise",), steps=1)
    assert "white noise" in explorer.why.value and explorer.explorer.steps == 1
    with pytest.raises(ValueError, match="family"):
        family_methods("pink_noise")
