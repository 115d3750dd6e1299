"""Explanation methods, written from scratch; one signature for all (see ``_common``):

    method(model, images, target=None, **options) -> Tensor[N, H, W]
"""
from .baselines import centre_map, random_map
from .cam import cam
from .gradcam import gradcam, gradcam_pp, hirescam
from .guided import guided_backprop, guided_gradcam
from .integrated import integrated_gradients
from .occlusion import count_windows, occlusion
from .perturbation_cam import ablation_cam, score_cam
from .saliency import saliency, smoothgrad

__all__ = ["saliency", "smoothgrad", "integrated_gradients", "guided_backprop", "guided_gradcam", "occlusion",
           "count_windows", "cam", "gradcam", "gradcam_pp", "hirescam", "ablation_cam", "score_cam", "random_map",
           "centre_map"]
