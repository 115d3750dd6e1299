"""Solutions to notebook 03's exercises (each function is pasted in place of its stub by the tests)."""
import torch


def cam_map(features, weight, target):
    """M_c = Σ_k w_ck f_k for each image's target class c → [N, h, w] (Zhou et al. 2016, eq. 2)."""
    w = weight[target]                                       # [N, K]: each image's class row
    return torch.einsum("nk,nkhw->nhw", w, features)         # signed: no ReLU, no rescaling


def logits_from_cams(cams, bias):
    """y_c = mean over cells of M_c + b_c, for every image and class → [N, C]."""
    return cams.mean(dim=(2, 3)) + bias


def decision_map(features, weight):
    """d = M_orca − M_leopard = (w_1 − w_0) · f → [N, h, w]: evidence for orca against leopard, signed."""
    return torch.einsum("k,nkhw->nhw", weight[1] - weight[0], features)
