#!/usr/bin/python3
"""Reference explanation maps for tests/test-explain.c, computed in PyTorch.

An independent implementation of DESIGN.md §3 (saliency, guided backprop,
CAM, Grad-CAM, SAM), run on the b2_64_c1 fixture (model.safetensors, x.npy,
labels.npy written by make_fixtures.py), explaining each slice's labelled
class. Writes into tests/reference/fixtures/explain_b2_64_c1/:

    saliency.npy          (N,H,W)    d y_c / d x (summed over input channels)
    guided.npy            (N,H,W)    guided backprop of y_c
    cam.npy               (N,H6,W6)  sum_k w_fc[c,k] A6_k
    gradcam_<l>.npy       (N,Hl,Wl)  ReLU(sum_k mean_xy(K_k) A_k), l in 2b 3b 4b 6
    sam_<l>.npy           (N,Hl,Wl)  SAM, our reading (below)
    sam_2b_up.npy         (N,H,W)    sam_2b, bilinear to the input grid
                                     (F.interpolate, align_corners=False)
    saliency_prob.npy     (N,H,W)    d p_c / d x (softmax-probability target)
    sam_3b_prob.npy       (N,H3,W3)  SAM at 3b for the probability target

SAM (DESIGN.md §3): G = per-channel 2-D gaussian blur of K = dy/dA with
sigma 0.75 px at the layer's resolution, 5x5 taps normalised to sum 1,
edges replicated; L' = max_xy(A) - A where G < 0, else A; SAM = sum_k |G| L'.
Here the blur is a depthwise conv2d after F.pad(mode="replicate"), which is
a different computation from the C code's separable passes.

Precision: as in make_fixtures.py, everything runs in float64 on the exact
float32 weights and inputs and is rounded to float32 when saved.

Run: /usr/bin/python3 tests/reference/make_explain_fixtures.py
"""

import hashlib
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io  # noqa: E402
from make_fixtures import LAYERS, CTPhaseNet, GuidedReLU  # noqa: E402

CASE = os.path.join(HERE, "fixtures", "b2_64_c1")
OUT = os.path.join(HERE, "fixtures", "explain_b2_64_c1")
MAP_LAYERS = ["2b", "3b", "4b", "6"]
SIGMA, TAPS = 0.75, 5


def load_net():
    """The fixture's weights in the reference module, float64."""
    tensors, meta = safetensors_io.load(os.path.join(CASE, "model.safetensors"))
    net = CTPhaseNet(int(meta["in_channels"]))
    state = {name: torch.from_numpy(a) for name, a in tensors}
    net.load_state_dict(state)
    return net.double().eval()


def gaussian_kernel():
    """5x5 gaussian, sigma 0.75, normalised to sum 1 (as a 2-D array)."""
    r = TAPS // 2
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0),
                            indexing="ij")
    k = torch.exp(-(xx ** 2 + yy ** 2) / (2 * SIGMA ** 2)).double()
    return k / k.sum()


def blur(t):
    """Per-channel blur of (N,K,H,W), edges replicated."""
    k = t.shape[1]
    w = gaussian_kernel().expand(k, 1, TAPS, TAPS).contiguous()
    r = TAPS // 2
    return F.conv2d(F.pad(t, (r, r, r, r), mode="replicate"), w, groups=k)


def sam(a, g):
    """SAM of activations a and their gradient g, both (N,K,H,W)."""
    gb = blur(g)
    amax = a.amax(dim=(2, 3), keepdim=True)
    lp = torch.where(gb < 0, amax - a, a)
    return (gb.abs() * lp).sum(dim=1)


def gradcam(a, g):
    w = g.mean(dim=(2, 3), keepdim=True)
    return F.relu((w * a).sum(dim=1))


def target(logits, labels, prob):
    """Sum over slices of each slice's labelled logit (or probability); the
    slices are independent, so each slice's gradient is its own."""
    idx = torch.arange(len(labels))
    scores = F.softmax(logits, dim=1) if prob else logits
    return scores[idx, labels].sum()


def layer_maps(net, x, labels, prob):
    """Saliency, and A and K at every layer, for the plain backward."""
    xs = x.clone().requires_grad_(True)
    logits, _, acts = net(xs)
    for a in acts.values():
        a.retain_grad()
    target(logits, labels, prob).backward()
    grads = {name: acts[name].grad for name in acts}
    acts = {name: acts[name].detach() for name in acts}
    return xs.grad.sum(dim=1), acts, grads


def guided_map(net, x, labels):
    xs = x.clone().requires_grad_(True)
    logits, _, _ = net(xs, relu=GuidedReLU.apply)
    target(logits, labels, False).backward()
    return xs.grad.sum(dim=1)


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    net = load_net()
    x = torch.from_numpy(np.load(os.path.join(CASE, "x.npy"))).double()
    labels = torch.from_numpy(np.load(os.path.join(CASE, "labels.npy")))
    out = {}
    sal, acts, grads = layer_maps(net, x, labels, prob=False)
    out["saliency"] = sal
    out["guided"] = guided_map(net, x, labels)
    w = net.fc.weight.detach()[labels]  # (N,64)
    out["cam"] = (w[:, :, None, None] * acts["6"]).sum(dim=1)
    for name in MAP_LAYERS:
        out["gradcam_" + name] = gradcam(acts[name], grads[name])
        out["sam_" + name] = sam(acts[name], grads[name])
    up = F.interpolate(out["sam_2b"][:, None], size=x.shape[2:], mode="bilinear",
                       align_corners=False)
    out["sam_2b_up"] = up[:, 0]
    sal_p, acts_p, grads_p = layer_maps(net, x, labels, prob=True)
    out["saliency_prob"] = sal_p
    out["sam_3b_prob"] = sam(acts_p["3b"], grads_p["3b"])
    assert [n for n, _ in LAYERS][-1] == "6"

    digest = hashlib.sha256()
    for key in sorted(out):
        a = out[key].detach().numpy().astype(np.float32)
        np.save(os.path.join(OUT, key + ".npy"), a)
        with open(os.path.join(OUT, key + ".npy"), "rb") as f:
            digest.update(key.encode() + f.read())
        print("%-14s %-14s min %+.3e max %+.3e" % (key, a.shape, a.min(), a.max()))
    taps = [math.exp(-i * i / (2 * SIGMA ** 2)) for i in range(-2, 3)]
    print("1-D taps", [round(t / sum(taps), 6) for t in taps])
    print("explain fixtures sha256 %s" % digest.hexdigest())


if __name__ == "__main__":
    main()
