"""Recipes: per experiment, a typed config per profile, the model builder, the loss, the task distribution
and the meta-training parts. The operator families (issue 16) share :mod:`.operator_recipe`; one module per
family (``tone_curve``, ``colour_cast``, ``directional_blur``, ``stripe_noise``).
"""
