"""Seeing inside a CNN, on fastconv's kernels: the visualisation methods of the CNN notes.

Every method is a function returning tensors; the user's model is never modified.

=====================  ============================================================================
filters                first-layer filters as images, w / ||w||
top_patches            the data-set patches that excite chosen channels most (+ receptive_field)
occlusion_map          drop of the class probability as a grey window slides over the image
saliency               |d score / d input|
guided_backprop        gradient through fastconv's guided-ReLU kernel (also ``deconvnet``)
class_model            an input optimised to maximise a class score minus an L2 penalty
invert                 an image reconstructed from a layer's embedding
deep_dream             a natural image nudged to amplify a layer's activations
style_transfer         content loss plus Gram-matrix style loss (``gram_matrix``)
fgsm, targeted_attack  adversarial examples with predictions and perturbation size
=====================  ============================================================================

Captum-shaped classes: ``Saliency``, ``GuidedBackprop``, ``Deconvolution``, ``Occlusion``.
"""
from ._common import guided_model, guided_functional
from .adversarial import Adversarial, fgsm, targeted_attack
from .attribution import (Deconvolution, GuidedBackprop, Occlusion, Saliency, deconvnet, guided_backprop,
                          occlusion, occlusion_map, saliency)
from .features import ReceptiveField, TopPatches, filters, first_conv, receptive_field, top_patches
from .synthesis import (Synthesis, class_model, deep_dream, gram_matrix, invert, style_transfer,
                        total_variation)

__all__ = ["Adversarial", "Deconvolution", "GuidedBackprop", "Occlusion", "ReceptiveField",
           "Saliency", "Synthesis", "TopPatches", "class_model", "deconvnet", "deep_dream", "fgsm", "filters",
           "first_conv", "gram_matrix", "guided_backprop", "guided_functional", "guided_model", "invert",
           "occlusion", "occlusion_map", "receptive_field", "saliency", "style_transfer", "targeted_attack",
           "top_patches", "total_variation"]
