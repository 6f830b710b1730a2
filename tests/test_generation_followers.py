"""Generators whose samples follow the support set (the CAVIA context VAE, the CGAN's new-class embedding),
the novelty metric that tells new samples from copies, and the benchmark on another ``ClassImageSource``."""

import hashlib
import io
import json
import zipfile

import pytest
import torch

from metalearn_kit.evaluation.generation import background_quality
from metalearn_kit.evaluation.novelty import nearest_distance, novelty_ratio
from metalearn_kit.models.conditional_gan import (
    CGAN,
    cgan_critic_loss,
    cgan_generator_loss,
    fit_class_embedding,
    sample_with_embedding,
)
from metalearn_kit.models.context_vae import ContextVAE, context_meta_loss
from metalearn_kit.recipes.generation_cavia import CaviaConfig
from metalearn_kit.recipes.generation_cgan import CGANConfig

torch.set_num_threads(1)


def _images(count: int, seed: int) -> torch.Tensor:
    return (torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) > 0.8).float()


# ---------------------------------------------------------------------------------------- novelty


def test_novelty_ratio_is_zero_for_copies_and_one_for_real_held_out_images():
    g = torch.Generator().manual_seed(0)
    support, query = torch.randn(5, 8, generator=g), torch.randn(10, 8, generator=g)
    assert novelty_ratio(support.clone(), support, query) == pytest.approx(0.0, abs=1e-9)  # copies
    assert novelty_ratio(query.clone(), support, query) == pytest.approx(1.0)  # as new as real images
    far = support + 100.0
    assert novelty_ratio(far, support, query) > 1.0
    # the nearest distance is per row: a point sitting on one support row is at 0
    assert float(nearest_distance(support[:1], support)[0]) == pytest.approx(0.0, abs=1e-9)


def test_novelty_ratio_refuses_bad_inputs_naming_them():
    support, query = torch.randn(5, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match="sample_features"):
        novelty_ratio(torch.randn(8), support, query)
    with pytest.raises(ValueError, match="query_features must have feature size 8"):
        novelty_ratio(torch.randn(3, 8), support, torch.randn(4, 7))
    with pytest.raises(ValueError, match="query images must be other images"):
        novelty_ratio(torch.randn(3, 8), support, support.clone())


# ------------------------------------------------------------------------------------ context VAE


def _tiny_context_vae() -> ContextVAE:
    torch.manual_seed(0)
    return ContextVAE(latent=4, context_dim=6, width=8, hidden=16, inner_lr=0.05)


def test_context_inner_loop_lowers_the_support_loss_and_moves_only_the_context():
    model = _tiny_context_vae()
    support = _images(5, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    contexts = model.adapt_context(support, 5)
    assert len(contexts) == 6 and all(c.shape == (1, 6) for c in contexts)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        loss_0 = float(model.task_loss(support[None], contexts[0]).detach())
        torch.manual_seed(1)
        loss_5 = float(model.task_loss(support[None], contexts[5]).detach())
    assert loss_5 < loss_0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the network did not move
    samples = model.sample(contexts[5][0], 7, torch.Generator().manual_seed(0))
    assert samples.shape == (7, 1, 28, 28) and 0 <= float(samples.min()) and float(samples.max()) <= 1


def test_second_order_meta_gradient_reaches_the_context_init_and_the_inner_rates():
    model = _tiny_context_vae()
    support, query = _images(10, 2).view(2, 5, 1, 28, 28), _images(6, 3).view(2, 3, 1, 28, 28)
    loss = context_meta_loss(model, support, query, inner_steps=2)
    loss.backward()
    assert model.context_init.grad is not None and float(model.context_init.grad.abs().sum()) > 0
    assert model.log_inner_lr.grad is not None and float(model.log_inner_lr.grad.abs().sum()) > 0
    model.zero_grad()
    context_meta_loss(model, support, query, inner_steps=2, first_order=True).backward()
    assert model.log_inner_lr.grad is None or float(model.log_inner_lr.grad.abs().sum()) == 0
    assert float(model.context_init.grad.abs().sum()) > 0


def test_context_vae_and_its_recipe_refuse_bad_arguments():
    model = _tiny_context_vae()
    with pytest.raises(ValueError, match="support must be"):
        model.adapt_context(torch.rand(28, 28), 1)
    with pytest.raises(ValueError, match="steps"):
        model.adapt_context(_images(2, 0), -1)
    with pytest.raises(ValueError, match="inner_lr"):
        ContextVAE(inner_lr=0.0)
    with pytest.raises(ValueError, match="inner_steps"):
        CaviaConfig(inner_steps=0)


# -------------------------------------------------------------------------------------------- CGAN


def test_cgan_losses_are_finite_and_the_penalty_choice_is_checked():
    torch.manual_seed(0)
    model = CGAN(4, latent=4, embedding=3, width=8, hidden=16)
    real, labels = _images(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    fake = model.generator(torch.randn(6, 4), labels)
    for penalty in ("wgan_gp", "ns_r1"):
        loss_c = cgan_critic_loss(model.critic, real, fake, labels, 10.0, 1.0, torch.Generator().manual_seed(0),
                                  penalty=penalty)
        loss_g = cgan_generator_loss(model.critic, fake, labels, 1.0, loss=penalty)
        assert torch.isfinite(loss_c) and torch.isfinite(loss_g)
    with pytest.raises(ValueError, match="penalty"):
        cgan_critic_loss(model.critic, real, fake, labels, penalty="hinge")
    with pytest.raises(ValueError, match="loss"):
        CGANConfig(loss="hinge")


def test_a_new_class_embedding_fitted_from_its_shots_reconstructs_them_better():
    torch.manual_seed(0)
    model = CGAN(4, latent=4, embedding=3, width=8, hidden=16)
    for p in model.generator.parameters():
        p.requires_grad_(False)
    support = _images(5, 5)
    embeddings, losses = fit_class_embedding(model.generator, support, model.embedding_init, steps=30, lr=0.1)
    assert len(embeddings) == 31 and len(losses) == 30 and losses[-1] < losses[0]
    assert torch.equal(embeddings[0], model.embedding_init)  # step 0 is the (meta-learned) init
    samples = sample_with_embedding(model.generator, embeddings[-1], 6, torch.Generator().manual_seed(0))
    assert samples.shape == (6, 1, 28, 28)
    shipped = model.without_critic()  # what the checkpoint keeps: the generator and the embedding init
    assert shipped.critic is None and not any(k.startswith("critic.") for k in shipped.state_dict())
    again = sample_with_embedding(shipped.generator, embeddings[-1], 6, torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)


def test_background_quality_counts_the_feature_nets_labels():
    from test_generation_metrics import fake_class_source  # tests/ is on sys.path under pytest

    from metalearn_kit.recipes.feature_net import train_feature_net

    source = fake_class_source(5, 8, seed=0)
    net, _ = train_feature_net(source, steps=5, width=8, feature_dim=8)
    torch.manual_seed(0)
    model = CGAN(5, latent=4, embedding=3, width=8, hidden=16)
    quality = background_quality(model, net, source, per_class=3)
    assert set(quality) >= {"accuracy", "holdout_accuracy", "novelty_ratio"} and quality["classes"] == 5
    assert 0 <= quality["accuracy"] <= 1 and quality["novelty_ratio"] > 0


# --------------------------------------------------------------------------- another test source


def _omniglot_archive(path, classes: int = 6, drawers: int = 20) -> None:
    """``images_evaluation/<alphabet>/characterNN/<id>_NN.png``, black strokes on white, like the originals."""
    from PIL import Image, ImageDraw

    with zipfile.ZipFile(path, "w") as archive:
        for c in range(1, classes + 1):
            g = torch.Generator().manual_seed(c)
            base = torch.randint(15, 90, (4, 2), generator=g)
            for d in range(1, drawers + 1):
                image = Image.new("1", (105, 105), 1)
                jitter = torch.randint(-4, 5, (4, 2), generator=g)
                ImageDraw.Draw(image).line([tuple(int(v) for v in p) for p in base + jitter], fill=0, width=4)
                buffer = io.BytesIO()
                image.save(buffer, format="PNG")
                archive.writestr(f"images_evaluation/Script_{(c - 1) // 3}/character{c:02d}/{900 + c}_{d:02d}.png",
                                 buffer.getvalue())


def test_bench_generation_runs_on_an_omniglot_archive(tmp_path, monkeypatch):
    from metalearn_kit.cli import main
    from metalearn_kit.data import downloads

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _omniglot_archive(mirror / "images_evaluation.zip")
    digest = "sha256:" + hashlib.sha256((mirror / "images_evaluation.zip").read_bytes()).hexdigest()
    monkeypatch.setitem(downloads.KNOWN_HASHES, "omniglot",
                        {"images_evaluation.zip": digest, "images_background.zip": digest})
    monkeypatch.setitem(downloads.BASE_URLS, "omniglot", mirror.as_uri())
    out = tmp_path / "omniglot.json"
    code = main(["bench", "generation", "--profile", "fast", "--methods", "statistician", "--eval-tasks", "2",
                 "--test-source", "omniglot", "--data-root", str(tmp_path / "data"), "--json", str(out)])
    assert code == 0
    payload = json.loads(out.read_text())
    assert payload["test_source"] == "omniglot/evaluation" and len(payload["eval_classes"]) == 2
    assert all(name.startswith("Script_") for name in payload["eval_classes"])
    assert {r["kind"] for r in payload["rows"]} == {"amortised", "trivial", "reference"}
    assert {r["source"] for r in payload["rows"]} == {"omniglot"}
    assert {r["metric"] for r in payload["rows"] if r["kind"] == "amortised"} >= {
        "query_nll_nats", "prototype_accuracy", "frechet_distance", "novelty_ratio", "precision", "recall",
        "same_alphabet_accuracy", "precision_mean_image"}
    with pytest.raises(SystemExit):  # an unknown test source is refused by the parser, naming the choices
        main(["bench", "generation", "--test-source", "mnist-fashion"])
