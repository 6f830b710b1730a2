"""Models the kit meta-learns: restorers (a residual CNN, an encoder/restorer split, the unrolled iterative
restorer — the source's CIR — with its known operators), SIREN, sparse representation (an OMP patch dictionary and
a meta-learnable LISTA sparse coder), the generators (conv VAE, Neural-Statistician-lite, WGAN-GP generator and
critic) and the glyph classifier that scores generated samples. No BatchNorm anywhere: its running statistics
break per-task adaptation."""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["ConvRestorer"], ".conv"),
    **dict.fromkeys(["EncoderRestorer", "UnrolledRestorer", "LinearOperator", "blur", "blur_adjoint",
                     "upsample"], ".restoration"),
    **dict.fromkeys(["Siren", "SineLayer", "coordinate_grid", "image_to_pixels", "pixels_to_image", "fit_image"],
                    ".siren"),
    **dict.fromkeys(["PatchDictionary"], ".sparse"),
    **dict.fromkeys(["UnrolledSparseCoder", "soft_threshold"], ".lista"),
    **dict.fromkeys(["ConvVAE", "VAEOutput", "NeuralStatisticianLite", "vae_loss_fn", "negative_elbo",
                     "importance_weighted_nll", "mean_image", "statistician_loss", "condition_on"], ".generation"),
    **dict.fromkeys(["Generator", "Critic", "ConditionalGenerator", "ConditionalCritic", "wgan_gp_critic_loss",
                     "wgan_generator_loss", "gradient_penalty"], ".gan"),
    "FeatureNet": ".feature_net",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
