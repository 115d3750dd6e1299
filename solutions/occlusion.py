"""Solutions to notebook 02's exercises (each function is pasted in place of its stub by the tests)."""
import math

import torch


def occlusion_map(model, images, target, patch=8, stride=4, fill=0.5):
    """Mean drop of the target logit over the windows covering each pixel → [N, H, W] (Zeiler & Fergus 2014)."""
    n, _, h, w = images.shape
    rows = torch.arange(n)
    starts_h = [i * stride for i in range(math.ceil((h - patch) / stride) + 1)]  # the last window may be clipped
    starts_w = [i * stride for i in range(math.ceil((w - patch) / stride) + 1)]
    total, count = torch.zeros(n, h, w), torch.zeros(h, w)
    with torch.no_grad():                                     # no gradients: forward passes only
        clean = model(images)[rows, target]
        for top in starts_h:
            for left in starts_w:
                occluded = images.clone()
                occluded[:, :, top:top + patch, left:left + patch] = fill
                drop = clean - model(occluded)[rows, target]  # one forward pass per window, for all N images
                total[:, top:top + patch, left:left + patch] += drop.view(n, 1, 1)
                count[top:top + patch, left:left + patch] += 1
    return total / count


def occlusion_map_batched(model, images, target, patch=8, stride=4, fill=0.5):
    """The same map, with every window of one image in a single forward pass."""
    n, _, h, w = images.shape
    starts_h = [i * stride for i in range(math.ceil((h - patch) / stride) + 1)]
    starts_w = [i * stride for i in range(math.ceil((w - patch) / stride) + 1)]
    masks = torch.zeros(len(starts_h) * len(starts_w), 1, h, w, dtype=torch.bool)
    for k, (top, left) in enumerate((t, l) for t in starts_h for l in starts_w):
        masks[k, :, top:top + patch, left:left + patch] = True
    count = masks.sum(0).squeeze(0).float()
    out = torch.empty(n, h, w)
    with torch.no_grad():
        clean = model(images)[torch.arange(n), target]
        for i in range(n):
            occluded = torch.where(masks, torch.full_like(images[i:i + 1], fill), images[i:i + 1])  # [windows, 3, H, W]
            drops = clean[i] - model(occluded)[:, target[i]]
            out[i] = (drops.view(-1, 1, 1) * masks.squeeze(1)).sum(0) / count
    return out


def largest_drops(model, images, target):
    """Each image's largest occlusion drop (patch 16, stride 8) with the grey fill (row 0) and the blur (row 1)."""
    from utils.explain import occlusion
    return torch.stack([occlusion(model, images, target, patch=16, stride=8, fill=fill).amax((1, 2))
                        for fill in (0.5, "blur")])
