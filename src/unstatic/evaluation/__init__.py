"""The shapes evaluator: an offline stand-in for FID and CLIP score, trained on the shapes world's ground truth.

``ShapesReader`` reads an image back into per-cell labels; ``fidelity`` scores generated images against their
prompts' scenes; ``frechet`` measures distribution distance and diversity in the reader's feature space.
"""
