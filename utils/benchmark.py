"""Benchmarks: measured here, never asserted in the test suite (timings depend on the machine).

``python -m utils.benchmark [--only SECTION ...] [--repeats R]`` prints one table per
section and whether each target is met. Ratios are robust to the machine's
drift: all functions are timed round-robin within each of ``R`` repeats (after a
warm-up), a ratio is computed per repeat, and the median ratio is reported.

Sections:
  * ``data`` — drawing the embedded dataset: 3,000 images at 64 px (target: ≤ 10 s
    on 2 cores, docs/design.md section 3), and the same per image at 192 px.
  * ``methods`` — ratios only, measured side by side in this process on the same
    model (the default course model), batch (32 ``test_iid`` images, 64 px) and
    device: each course method ÷ its pytorch-grad-cam / Captum counterpart; each
    gradient method ÷ one forward+backward pass; occlusion ÷ the ideal cost of
    its forward passes. "One forward+backward" is the least any gradient method
    must do: the forward pass and the gradient of the target logits with respect
    to the input, parameters frozen. The "ideal" occlusion cost is forwarding the
    same number of images in batches of the same size (64); Captum's ``Occlusion``
    gets the same batching (``perturbations_per_eval`` × images = 64). Targets (issue 4):
    Grad-CAM ≤ 0.5× grad-cam, occlusion ≤ 0.7× Captum, saliency ≤ 1.0× Captum,
    gradient methods ≤ 1.3× one forward+backward.
  * ``perturbation`` — AblationCAM and Score-CAM ÷ grad-cam's ``AblationCAM`` / ``ScoreCAM`` (targets ≤ 0.2 and
    ≤ 0.5, issue 24), and Grad-CAM ÷ ``GradCAM`` again, on a ResNet-18 at 224 px, ``layer4``, one image, the same
    batch size (32) on both sides; Score-CAM with ``precision="bfloat16"`` too, with its largest error against the
    float32 map. bfloat16 is fast only on hardware that has it (here: AMX), so its ratio is the machine's.
  * ``photos`` — the real network (EfficientNet-Lite0, :mod:`utils.photos`) on one photo at 224 px, its head
    (1,280 channels, 7×7): Grad-CAM, AblationCAM and Score-CAM ÷ grad-cam's, occlusion ÷ Captum's, each with the
    defaults on both sides (what a user calls) and with a tuned setting (said in the row). The whole-network
    methods take tens of seconds a call, so this section runs one round after no warm-up (``--repeats`` sets the
    rounds of Grad-CAM only); about 6 minutes on 2 cores.
  * ``attribution`` — Integrated Gradients ÷ Captum's ``IntegratedGradients`` (32 steps, the right Riemann rule,
    the same path points per pass on both sides; target ≤ 0.7, issue 34), Guided Backprop ÷ Captum's
    ``GuidedBackprop`` (≤ 1.0) and Guided Grad-CAM ÷ Captum's ``GuidedGradCam``, on the course model (32 images,
    64 px) and on EfficientNet-Lite0 (one photo, 224 px; Captum on ``relu6_as_relu(net)``, so that it guides the
    ReLU6 as ours does; on the network itself it guides nothing); IG also ÷ 32 forward+backward passes.
  * ``training`` — one camloss epoch ÷ one default epoch (same data, seed and
    device; target ≤ 1.10, issue 5): the penalty must not cost a second pass; and
    one rrr epoch ÷ one default epoch (no target: RRR's penalty is a double backward, issue 36).
    Only the training steps are timed (``train`` records each epoch's seconds;
    evaluation is left out), two alternated runs per strategy, first epoch dropped,
    both strategies on the camloss strategy's architecture.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

from .data import load_split

Row = tuple[str, str, str]  # what, measured, target verdict


def _median_seconds(fn: Callable[[], object], repeats: int, warmup: Callable[[], object] | None = None) -> float:
    (warmup or fn)()  # warm-up (imports, allocator, caches)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _round_robin(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of every function, ``repeats`` rounds, each round calling each function once."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def bench_data(repeats: int) -> list[Row]:
    def draw(n: int, size: int) -> Callable[[], object]:
        return lambda: load_split("train", n, size)

    total = _median_seconds(draw(3000, 64), repeats, warmup=draw(50, 64))  # the real thing, stacked tensors
    per_image_64 = total / 3000
    per_image_192 = _median_seconds(draw(100, 192), repeats) / 100
    return [
        ("3,000 images at 64 px (load_split)", f"{total:.1f} s", f"≤ 10 s: {'met' if total <= 10 else 'NOT met'}"),
        ("one image at 64 px", f"{1000 * per_image_64:.2f} ms", ""),
        ("one image at 192 px", f"{1000 * per_image_192:.2f} ms",
         f"{per_image_192 / per_image_64:.1f}× the 64 px cost (9× the pixels)"),
    ]


def _verdict(ratio: float, target: float) -> str:
    return f"target ≤ {target}: {'met' if ratio <= target else 'NOT met'}"


def _precision_error(exact, reduced) -> str:
    """The largest per-image error of a reduced-precision map, as a share of that image's largest |value|."""
    err = (reduced - exact).abs().flatten(1).amax(1) / exact.abs().flatten(1).amax(1)
    return f"{100 * float(err.max()):.2f}% (worst of {len(err)} images)"


def _score_cam_bf16_error(resnet, x) -> str:
    """How far ``precision="bfloat16"`` moves Score-CAM's map: on the benchmark's ResNet-18 image (layer4) and on 16
    ``test_swapped`` images through the shipped course model (features.14)."""
    from .explain import score_cam
    from .models import load_shipped

    course, _ = load_shipped()
    xs = load_split("test_swapped", 16).images
    errors = [_precision_error(score_cam(net, images, layer=layer),
                               score_cam(net, images, layer=layer, precision="bfloat16"))
              for net, images, layer in ((resnet, x, "layer4"), (course, xs, "features.14"))]
    return f"max |bfloat16 − float32| ÷ max map: ResNet-18 {errors[0]}, course model {errors[1]}"


def bench_methods(repeats: int) -> list[Row]:
    import torch
    from captum.attr import NoiseTunnel, Occlusion, Saliency
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from .explain import cam, gradcam, gradcam_pp, hirescam, occlusion, saliency, smoothgrad
    from .explain.occlusion import count_windows
    from .models import load_shipped

    model, _ = load_shipped()
    x = load_split("test_iid", 32).images
    with torch.no_grad():
        target = model(x).argmax(1)
    layer = model.features[-1]

    def fwd() -> None:
        with torch.no_grad():
            model(x)

    def fwd_bwd() -> None:
        for p in model.parameters():
            p.requires_grad_(False)
        xi = x.detach().requires_grad_(True)
        torch.autograd.grad(model(xi).gather(1, target.view(-1, 1)).sum(), xi)
        for p in model.parameters():
            p.requires_grad_(True)

    def grad_cam_package(cls):  # the package's usual use: a fresh explainer per call
        def run() -> None:
            with cls(model=model, target_layers=[layer]) as e:
                e(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in target])
        return run

    fns = {
        "fwd": fwd, "fwd_bwd": fwd_bwd,
        "cam": lambda: cam(model, x, target),
        "saliency": lambda: saliency(model, x, target),
        "captum_saliency": lambda: Saliency(model).attribute(x.clone().requires_grad_(), target=target),
        "smoothgrad": lambda: smoothgrad(model, x, target, n_samples=8, batch_size=8),
        "captum_smoothgrad": lambda: NoiseTunnel(Saliency(model)).attribute(
            x.clone(), nt_type="smoothgrad", nt_samples=8, nt_samples_batch_size=8, stdevs=0.15, target=target),
        "gradcam": lambda: gradcam(model, x, target, layer=layer),
        "gradcam_pp": lambda: gradcam_pp(model, x, target, layer=layer),
        "hirescam": lambda: hirescam(model, x, target, layer=layer),
        "pkg_gradcam": grad_cam_package(GradCAM),
        "pkg_gradcam_pp": grad_cam_package(GradCAMPlusPlus),
        "pkg_hirescam": grad_cam_package(HiResCAM),
    }
    # occlusion: 8-px patch, stride 4 → 225 windows; 8 images so a repeat stays short; 64 images per forward
    xo, to = x[:8], target[:8]
    n_forwards = 8 * (1 + count_windows(64, 64, 8, 4))

    def ideal() -> None:
        with torch.no_grad():
            for start in range(0, n_forwards, 64):
                model(x.repeat(2, 1, 1, 1)[: min(64, n_forwards - start)])

    fns["occlusion"] = lambda: occlusion(model, xo, to, patch=8, stride=4)
    fns["captum_occlusion"] = lambda: Occlusion(model).attribute(
        xo, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4), baselines=0.5, target=to,
        perturbations_per_eval=8)  # 8 perturbations × 8 images = 64 images per forward, as ours
    fns["ideal_occlusion"] = ideal

    times = _round_robin(fns, repeats)

    def r(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b]))
    rows = [
        ("saliency ÷ Captum Saliency", f"{r('saliency', 'captum_saliency'):.2f}×", _verdict(r("saliency", "captum_saliency"), 1.0)),
        ("SmoothGrad ÷ Captum NoiseTunnel (8 samples)", f"{r('smoothgrad', 'captum_smoothgrad'):.2f}×", ""),
        ("Grad-CAM ÷ grad-cam GradCAM", f"{r('gradcam', 'pkg_gradcam'):.2f}×", _verdict(r("gradcam", "pkg_gradcam"), 0.5)),
        ("Grad-CAM++ ÷ grad-cam GradCAMPlusPlus", f"{r('gradcam_pp', 'pkg_gradcam_pp'):.2f}×", ""),
        ("HiResCAM ÷ grad-cam HiResCAM", f"{r('hirescam', 'pkg_hirescam'):.2f}×", ""),
        ("occlusion 8/4 ÷ Captum Occlusion", f"{r('occlusion', 'captum_occlusion'):.2f}×", _verdict(r("occlusion", "captum_occlusion"), 0.7)),
        ("occlusion 8/4 ÷ ideal batched forwards", f"{r('occlusion', 'ideal_occlusion'):.2f}×", ""),
    ]
    for name in ("saliency", "gradcam", "gradcam_pp", "hirescam"):
        rows.append((f"{name} ÷ one forward+backward", f"{r(name, 'fwd_bwd'):.2f}×", _verdict(r(name, "fwd_bwd"), 1.3)))
    rows.append(("SmoothGrad ÷ (8 × forward+backward)", f"{r('smoothgrad', 'fwd_bwd') / 8:.2f}×", ""))
    rows.append(("CAM ÷ one forward", f"{r('cam', 'fwd'):.2f}×", ""))
    rows.append(("one forward+backward ÷ one forward", f"{r('fwd_bwd', 'fwd'):.2f}×", "(for scale)"))
    return rows


def bench_training(repeats: int) -> list[Row]:
    """One camloss (and one rrr) epoch ÷ one default epoch, all on the camloss strategy's architecture; training
    steps only.

    ``train`` times each epoch. Under the alternating schedule camloss has cross-entropy epochs and
    penalty epochs, so each run times an equal number of both (epochs 2 … 2·repeats + 1; the first is a warm-up)
    and the ratio compares mean epochs over the same epoch numbers.
    """
    from .train import STRATEGIES, TrainConfig, train

    arch = STRATEGIES["camloss"].config_defaults.get("arch", "course")

    def epochs(strategy: str) -> list[float]:
        result = train(TrainConfig(strategy=strategy, arch=arch, epochs=2 * repeats + 1), progress=False)
        return [h["seconds"] for h in result.history[1:]]  # the first epoch is a warm-up

    rounds = [(epochs("default"), epochs("camloss"), epochs("rrr")) for _ in range(2)]  # alternated, against drift
    default = statistics.mean(t for d, _, _ in rounds for t in d)
    camloss = statistics.mean(t for _, c, _ in rounds for t in c)
    rrr = statistics.mean(t for _, _, r in rounds for t in r)
    odd = statistics.mean(t for _, c, _ in rounds for t in c[0::2])   # epochs 2, 4, …: index 1, 3, … (penalty-only
    even = statistics.mean(t for _, c, _ in rounds for t in c[1::2])  # when alternating), then cross-entropy epochs
    ratio = camloss / default
    return [(f"default epoch (s, training steps, {arch} architecture)", f"{default:.2f}", ""),
            (f"camloss epoch (s, training steps, {arch} architecture)", f"{camloss:.2f}", ""),
            ("  of which epochs 2, 4, … / 3, 5, …", f"{odd:.2f} / {even:.2f}",
             "(alternate schedule: penalty-only / cross-entropy-only)"),
            ("camloss epoch ÷ default epoch", f"{ratio:.2f}×", _verdict(ratio, 1.10)),
            (f"rrr epoch (s, training steps, {arch} architecture)", f"{rrr:.2f}", ""),
            ("rrr epoch ÷ default epoch", f"{rrr / default:.2f}×",
             "(no target: double backpropagation, and the default's channels-last layout does not pay off there)")]


def bench_perturbation_cams(repeats: int) -> list[Row]:
    """AblationCAM and Score-CAM ÷ pytorch-grad-cam's, on a torchvision ResNet-18 (random weights) at 224 px,
    ``layer4``, one image, the same batch size on both sides (32 ablated copies / masked images per forward)."""
    import contextlib
    import io

    import torch
    from pytorch_grad_cam import AblationCAM, GradCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchvision.models import resnet18

    from .explain import ablation_cam, gradcam, score_cam

    torch.manual_seed(0)
    model = resnet18(weights=None).eval()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = model(x).argmax(1)
    targets = [ClassifierOutputTarget(int(t)) for t in target]
    batch = 32

    def package(cls, **options):
        def run() -> None:
            with cls(model=model, target_layers=[model.layer4], **options) as e, \
                    contextlib.redirect_stderr(io.StringIO()):  # its progress bars
                if cls is ScoreCAM:
                    e.batch_size = batch  # ScoreCAM reads it from the instance (default 16)
                e(input_tensor=x, targets=targets)
        return run

    fns = {
        "ablation": lambda: ablation_cam(model, x, target, layer="layer4", batch_size=batch),
        "pkg_ablation": package(AblationCAM, batch_size=batch),
        "score": lambda: score_cam(model, x, target, layer="layer4", batch_size=batch),
        "pkg_score": package(ScoreCAM),
        "score_bf16": lambda: score_cam(model, x, target, layer="layer4", batch_size=batch, precision="bfloat16"),
        "gradcam": lambda: gradcam(model, x, target, layer="layer4"),
        "pkg_gradcam": package(GradCAM),
    }
    times = _round_robin(fns, repeats)

    def r(a: str, b: str) -> float:
        return statistics.median(u / v for u, v in zip(times[a], times[b]))
    return [
        ("AblationCAM ÷ grad-cam AblationCAM", f"{r('ablation', 'pkg_ablation'):.3f}×", _verdict(r("ablation", "pkg_ablation"), 0.2)),
        ("Score-CAM ÷ grad-cam ScoreCAM", f"{r('score', 'pkg_score'):.2f}×", _verdict(r("score", "pkg_score"), 0.5)),
        ("Score-CAM bfloat16 ÷ grad-cam ScoreCAM", f"{r('score_bf16', 'pkg_score'):.2f}×",
         _verdict(r("score_bf16", "pkg_score"), 0.5) + "; " + _score_cam_bf16_error(model, x)),
        ("Grad-CAM ÷ grad-cam GradCAM (ResNet-18)", f"{r('gradcam', 'pkg_gradcam'):.2f}×", _verdict(r("gradcam", "pkg_gradcam"), 0.5)),
        ("AblationCAM / Score-CAM (s, 1 image)", f"{statistics.median(times['ablation']):.2f} / {statistics.median(times['score']):.2f}", ""),
    ]


def bench_photos(repeats: int) -> list[Row]:
    """The rows on the real network (see the module doc)."""
    import contextlib
    import io

    from captum.attr import Occlusion
    from pytorch_grad_cam import AblationCAM, GradCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from . import photos
    from .explain import ablation_cam, gradcam, occlusion, score_cam
    from .explain._common import auto_batch_size

    net = photos.load_network()
    x = photos.photo("chelsea")[None]
    target = [photos.class_index("Egyptian cat")]
    layer = net.get_submodule(photos.CAM_LAYER)
    auto = auto_batch_size(None, x)

    def package(cls, batch: int | None = None):
        def run() -> None:
            with cls(model=net, target_layers=[layer], **({"batch_size": batch} if cls is AblationCAM and batch
                                                             else {})) as e, \
                    contextlib.redirect_stderr(io.StringIO()):  # its progress bars
                if cls is ScoreCAM and batch:
                    e.batch_size = batch  # ScoreCAM reads it from the instance (default 16)
                e(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in target])
        return run

    def once(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    quick = _round_robin({"ours": lambda: gradcam(net, x, target, layer=photos.CAM_LAYER),
                          "pkg": package(GradCAM)}, repeats)
    grad = statistics.median(a / b for a, b in zip(quick["ours"], quick["pkg"]))
    t = {name: once(fn) for name, fn in {
        "ablation": lambda: ablation_cam(net, x, target, layer=photos.CAM_LAYER),
        "pkg_ablation": package(AblationCAM),
        "pkg_ablation_8": package(AblationCAM, 8),
        "score": lambda: score_cam(net, x, target, layer=photos.CAM_LAYER),
        "score_64": lambda: score_cam(net, x, target, layer=photos.CAM_LAYER, batch_size=64),
        "pkg_score": package(ScoreCAM),
        "pkg_score_8": package(ScoreCAM, 8),
        "occlusion": lambda: occlusion(net, x, target),
        "captum_occlusion": lambda: Occlusion(net).attribute(x, sliding_window_shapes=(3, 8, 8), strides=(3, 4, 4),
                                                             baselines=0.5, target=target),
        "occlusion_32": lambda: occlusion(net, x, target, patch=32, stride=16),
        "captum_occlusion_32": lambda: Occlusion(net).attribute(
            x, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), baselines=0.5, target=target,
            perturbations_per_eval=auto),
    }.items()}
    return [
        ("Grad-CAM ÷ grad-cam GradCAM (defaults)", f"{grad:.2f}×", _verdict(grad, 0.5)),
        ("AblationCAM ÷ grad-cam AblationCAM (defaults: 256 / 32 copies per pass)",
         f"{t['ablation'] / t['pkg_ablation']:.3f}×", _verdict(t["ablation"] / t["pkg_ablation"], 0.2)),
        ("AblationCAM ÷ grad-cam AblationCAM (theirs tuned: batch_size=8)", f"{t['ablation'] / t['pkg_ablation_8']:.3f}×",
         _verdict(t["ablation"] / t["pkg_ablation_8"], 0.2)),
        (f"Score-CAM ÷ grad-cam ScoreCAM (defaults: {auto} / 16 masked images per pass)",
         f"{t['score'] / t['pkg_score']:.2f}×", _verdict(t["score"] / t["pkg_score"], 0.5)),
        ("Score-CAM ÷ grad-cam ScoreCAM (theirs tuned: batch_size=8)", f"{t['score'] / t['pkg_score_8']:.2f}×",
         _verdict(t["score"] / t["pkg_score_8"], 0.5)),
        (f"Score-CAM, the old default (64 per pass) ÷ the default ({auto} per pass)",
         f"{t['score_64'] / t['score']:.2f}×", "(> 1: the default is faster)"),
        ("occlusion 8/4 ÷ Captum Occlusion (defaults: 3,025 windows; Captum 1 per pass)",
         f"{t['occlusion'] / t['captum_occlusion']:.2f}×", _verdict(t["occlusion"] / t["captum_occlusion"], 0.7)),
        (f"occlusion 32/16 ÷ Captum Occlusion (169 windows, both {auto} per pass)",
         f"{t['occlusion_32'] / t['captum_occlusion_32']:.2f}×",
         _verdict(t["occlusion_32"] / t["captum_occlusion_32"], 0.7)),
        ("seconds, 1 photo: AblationCAM / Score-CAM / occlusion 8/4 / occlusion 32/16",
         f"{t['ablation']:.2f} / {t['score']:.1f} / {t['occlusion']:.1f} / {t['occlusion_32']:.2f}",
         f"(grad-cam {t['pkg_ablation']:.0f} / {t['pkg_score']:.0f}; Captum {t['captum_occlusion']:.0f} / "
         f"{t['captum_occlusion_32']:.1f})"),
    ]


def bench_attribution(repeats: int) -> list[Row]:
    """The rows of Integrated Gradients, Guided Backprop and Guided Grad-CAM (see the module doc)."""
    import warnings

    import torch
    from captum.attr import GuidedBackprop, GuidedGradCam, IntegratedGradients

    from . import photos
    from .explain import guided_backprop, guided_gradcam, integrated_gradients
    from .explain._common import auto_batch_size
    from .explain.guided import relu6_as_relu
    from .models import load_shipped

    model, _ = load_shipped()
    net = photos.load_network()
    cases = {"course model, 32 images at 64 px": (model, load_split("test_iid", 32).images, "features.11"),
             "EfficientNet-Lite0, 1 photo at 224 px": (net, photos.photo("chelsea")[None], photos.CAM_LAYER)}
    rows: list[Row] = []
    for label, (m, x, layer) in cases.items():
        with torch.no_grad():
            target = m(x).argmax(1)
        batch = auto_batch_size(None, x)  # path points per pass, ours and Captum's
        theirs = relu6_as_relu(m)

        def fwd_bwd(m=m, x=x, target=target) -> None:
            xi = x.detach().requires_grad_(True)
            torch.autograd.grad(m(xi).gather(1, target.view(-1, 1)).sum(), xi)

        fns = {
            "ig": lambda m=m, x=x, t=target, b=batch: integrated_gradients(m, x, t, steps=32, batch_size=b),
            "captum_ig": lambda m=m, x=x, t=target, b=batch: IntegratedGradients(m).attribute(
                x, target=t, n_steps=32, method="riemann_right", internal_batch_size=b),
            "gb": lambda m=m, x=x, t=target: guided_backprop(m, x, t),
            "captum_gb": lambda m=theirs, x=x, t=target: GuidedBackprop(m).attribute(
                x.clone().requires_grad_(), target=t),
            "ggc": lambda m=m, x=x, t=target, layer=layer: guided_gradcam(m, x, t, layer=layer),
            "captum_ggc": lambda m=theirs, x=x, t=target, layer=layer: GuidedGradCam(
                m, m.get_submodule(layer)).attribute(x.clone().requires_grad_(), target=t,
                                                     interpolate_mode="bilinear"),
            "fwd_bwd": fwd_bwd,
        }
        with warnings.catch_warnings():  # Captum warns that it sets hooks on ReLU modules
            warnings.simplefilter("ignore")
            for p in m.parameters():
                p.requires_grad_(False)  # fwd_bwd: input gradients only, as every method computes them
            times = _round_robin(fns, repeats if m is model else max(3, repeats // 2))
            for p in m.parameters():
                p.requires_grad_(True)

        def r(a: str, b: str) -> float:
            return statistics.median(u / v for u, v in zip(times[a], times[b]))
        rows += [
            (f"{label}: Integrated Gradients ÷ Captum (32 steps, {batch} points per pass)", f"{r('ig', 'captum_ig'):.2f}×",
             _verdict(r("ig", "captum_ig"), 0.7)),
            (f"{label}: Integrated Gradients ÷ 32 forward+backward", f"{r('ig', 'fwd_bwd') / 32:.2f}×", ""),
            (f"{label}: Guided Backprop ÷ Captum GuidedBackprop", f"{r('gb', 'captum_gb'):.2f}×",
             _verdict(r("gb", "captum_gb"), 1.0)),
            (f"{label}: Guided Grad-CAM ÷ Captum GuidedGradCam", f"{r('ggc', 'captum_ggc'):.2f}×", ""),
        ]
    return rows


SECTIONS: dict[str, Callable[[int], list[Row]]] = {"data": bench_data, "methods": bench_methods,
                                                   "training": bench_training, "perturbation": bench_perturbation_cams,
                                                   "photos": bench_photos, "attribution": bench_attribution}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    for name in args.only:
        rounds = max(1, args.repeats // 2) if name == "training" else args.repeats  # an epoch is slow: half as many
        rows = SECTIONS[name](rounds)
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        how = (f"mean of {4 * rounds} epochs per strategy (2 alternated runs of {2 * rounds}, each after a warm-up epoch)"
               if name == "training" else f"Grad-CAM: median of {rounds} rounds after a warm-up; the rest: one call "
               f"each" if name == "photos" else f"median of {rounds} rounds after a warm-up")
        print(f"\n[{name}] {how}")
        for r in rows:
            print(f"  {r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
