#!/usr/bin/python3
"""Reference tensors for the C network tests (tests/test-nn.c and friends).

Builds the paper's classifier (DESIGN.md §1) in PyTorch with seeded random
weights, runs it forward and backward on seeded random inputs, and dumps every
tensor the C engine must reproduce into tests/reference/fixtures/<case>/:

    model.safetensors          the weights (our own writer: safetensors_io.py)
    x.npy                      (N,C,H,W) input
    labels.npy, class_weights.npy
    logits.npy, probs.npy      (N,5)
    loss.npy                   (1,) weighted cross-entropy, mean reduction
    act_<l>.npy                conv layer l after ReLU, before pooling (NCHW)
    grad_input.npy             dloss/dx
    grad_act_<l>.npy           dloss/d act_<l>
    grad_<tensor>.npy          dloss/d parameter, PyTorch layout
    saliency_input.npy         d(sum_i logit[i, labels[i]])/dx
    guided_input.npy           the same with guided-backprop ReLUs

How to run (Debian's PyTorch 1.13 lives under /usr/bin/python3):

    /usr/bin/python3 tests/reference/make_fixtures.py

Precision: the weights and inputs are float32 (that is what is stored), but
the reference computation runs in float64 on those exact float32 values, and
the results are rounded to float32 only when saved. The fixtures are thus the
exact answer to ~1e-7 relative, and a C test's tolerance only has to cover the
C engine's own float32 rounding. The script also reruns everything in float32
PyTorch and prints how far that lands from the float64 answer: a yardstick
for what tolerance a correct float32 implementation needs.

The output is reproducible byte for byte: fixed seeds, one thread, a fixed
`created` date in the metadata.
"""

import hashlib
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_ROOT = os.path.join(HERE, "fixtures")

# (layer name, output channels); input channels follow from the previous row.
LAYERS = [("1a", 16), ("1b", 16), ("2a", 16), ("2b", 16), ("3a", 32),
          ("3b", 32), ("4a", 32), ("4b", 32), ("5a", 64), ("5b", 64),
          ("6", 64)]
CLASSES = "noncon,cm,cmneph,neph,pyelo"
NUM_CLASSES = 5
CLASS_WEIGHTS = np.array([1.0, 2.0, 0.5, 1.5, 1.0], dtype=np.float32)
CREATED = "2024-01-01T00:00:00Z"  # fixed so the files are reproducible


class CTPhaseNet(nn.Module):
    """The paper's 132,181-parameter classifier (for in_channels = 1).

    forward() returns the logits and, per conv layer, the pre-ReLU and
    post-ReLU outputs, so callers can retain gradients on them. `relu` is
    swappable so the same module serves guided backprop.
    """

    def __init__(self, in_channels):
        super().__init__()
        prev = in_channels
        for name, out in LAYERS:
            setattr(self, "conv" + name, nn.Conv2d(prev, out, 3, padding=1, bias=True))
            prev = out
        self.fc = nn.Linear(64, NUM_CLASSES)

    def forward(self, x, relu=F.relu):
        pre, acts = {}, {}
        h = x
        for name, _ in LAYERS:
            z = getattr(self, "conv" + name)(h)
            h = relu(z)
            pre[name], acts[name] = z, h
            if name.endswith("b"):
                h = F.max_pool2d(h, 2, 2)
        return self.fc(h.mean(dim=(2, 3))), pre, acts


class GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes grad * 1[input > 0] * 1[grad > 0]."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x > 0) & (grad > 0)).to(grad.dtype)


def tensor_names():
    """Parameter tensors in file order: conv1a.weight, conv1a.bias, ... fc.bias."""
    names = []
    for name, _ in LAYERS:
        names += ["conv%s.weight" % name, "conv%s.bias" % name]
    return names + ["fc.weight", "fc.bias"]


def make_model(in_channels, seed):
    """Seeded float32 weights, scaled so signals neither vanish nor explode.

    Kaiming-normal (fan-in) conv weights keep activation variance roughly
    constant through the ReLU stack; the dense layer uses gain 1 so logits
    stay O(1) and the softmax is not saturated; biases are U(-0.1, 0.1).
    """
    torch.manual_seed(seed)
    net = CTPhaseNet(in_channels)
    with torch.no_grad():
        for name, _ in LAYERS:
            conv = getattr(net, "conv" + name)
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
            conv.bias.uniform_(-0.1, 0.1)
        nn.init.kaiming_normal_(net.fc.weight, mode="fan_in", nonlinearity="linear")
        net.fc.bias.uniform_(-0.1, 0.1)
    return net


def run_case(net, x, labels, weights, dtype, full):
    """Forward and (if `full`) backward passes in `dtype`; numpy results.

    Keys starting with "_" hold torch tensors for diagnostics only. Note that
    `net` is converted in place; float32 <-> float64 round trips are exact
    because the weights started as float32.
    """
    net = net.to(dtype)
    xt = torch.from_numpy(x).to(dtype)
    out = {}
    if not full:
        with torch.no_grad():
            logits, pre, acts = net(xt)
        out["logits"] = logits
        out["probs"] = F.softmax(logits, dim=1)
        out["act_6"] = acts["6"]
        out["_pre"], out["_acts"] = pre, acts
        return {k: v if k.startswith("_") else v.numpy() for k, v in out.items()}

    y = torch.from_numpy(labels)
    w = torch.from_numpy(weights).to(dtype)

    # Training loss and its gradients.
    net.zero_grad()
    xt.requires_grad_(True)
    logits, pre, acts = net(xt)
    for a in acts.values():
        a.retain_grad()
    loss = F.cross_entropy(logits, y, weight=w, reduction="mean")
    loss.backward()
    out["logits"] = logits.detach()
    out["probs"] = F.softmax(logits.detach(), dim=1)
    out["loss"] = loss.detach().reshape(1)
    out["grad_input"] = xt.grad
    for name, _ in LAYERS:
        out["act_" + name] = acts[name].detach()
        out["grad_act_" + name] = acts[name].grad
    for pname, p in net.named_parameters():
        out["grad_" + pname] = p.grad.clone()
    out["_pre"] = {k: v.detach() for k, v in pre.items()}
    out["_acts"] = {k: v.detach() for k, v in acts.items()}

    # Explanation targets: sum over the batch of the labelled class's logit.
    idx = torch.arange(len(labels))
    for key, relu in (("saliency_input", F.relu), ("guided_input", GuidedReLU.apply)):
        xs = torch.from_numpy(x).to(dtype).requires_grad_(True)
        logits, _, _ = net(xs, relu=relu)
        logits[idx, y].sum().backward()
        out[key] = xs.grad
    net.zero_grad()
    return {k: v if k.startswith("_") else v.numpy() for k, v in out.items()}


def tie_margins(pre, acts):
    """How close the reference is to a decision a float32 engine could flip.

    Returns (smallest |pre-activation| over all conv outputs, smallest gap
    between the largest and second-largest value of a 2x2 pooling window
    whose maximum is positive). Windows of all zeros are exact ties that
    every implementation breaks the same way (first in row-major order).
    """
    min_pre = min(float(z.abs().min()) for z in pre.values())
    min_gap = float("inf")
    for name, a in acts.items():
        if not name.endswith("b"):
            continue
        n, c, h, w = a.shape
        win = a[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
        win = win.permute(0, 1, 2, 4, 3, 5).reshape(-1, 4)
        top2 = win.topk(2, dim=1).values
        pos = top2[:, 0] > 0
        if pos.any():
            min_gap = min(min_gap, float((top2[pos, 0] - top2[pos, 1]).min()))
    return min_pre, min_gap


def decision_flips(ref, f32):
    """Number of ReLU masks and max-pool argmaxes on which the float32 run
    disagrees with the float64 one (0 means float32 rounding does not reach
    any decision of the reference)."""
    flips = 0
    for name, _ in LAYERS:
        flips += int(((ref["_pre"][name] > 0) != (f32["_pre"][name] > 0)).sum())
        if name.endswith("b"):
            _, i64 = F.max_pool2d(ref["_acts"][name], 2, 2, return_indices=True)
            _, i32 = F.max_pool2d(f32["_acts"][name], 2, 2, return_indices=True)
            flips += int((i64 != i32).sum())
    return flips


def rel_err(ref, got):
    """max |got - ref| / max |ref|: scale-free distance of two tensors."""
    scale = float(np.abs(ref).max())
    return float(np.abs(got - ref).max()) / scale if scale > 0 else 0.0


def write_case(case, in_channels, n, h, w, labels, seed, full):
    out_dir = os.path.join(OUT_ROOT, case)
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):  # no stale files from earlier layouts
        os.remove(os.path.join(out_dir, old))

    net = make_model(in_channels, seed)
    nparams = sum(p.numel() for p in net.parameters())
    expected = 132181 + 16 * 9 * (in_channels - 1)
    assert nparams == expected, (nparams, expected)

    params = dict(net.named_parameters())
    tensors = [(name, params[name].detach().numpy()) for name in tensor_names()]
    metadata = {
        "format": "ctphase/1",
        "in_channels": str(in_channels),
        "input_size": "512",
        "hu_mean": "-23.3",
        "hu_std": "144.1",
        "classes": CLASSES,
        "trained_on": "random weights (test fixture)",
        "created": CREATED,
        "name": "fixture-" + case,
    }
    safetensors_io.save(os.path.join(out_dir, "model.safetensors"), tensors, metadata)

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, in_channels, h, w)).astype(np.float32)
    labels = np.asarray(labels, dtype=np.int64)

    ref = run_case(net, x, labels, CLASS_WEIGHTS, torch.float64, full)
    f32 = run_case(net, x, labels, CLASS_WEIGHTS, torch.float32, full)

    arrays = {"x": x}
    if full:
        arrays["labels"] = labels
        arrays["class_weights"] = CLASS_WEIGHTS
    for key, value in ref.items():
        if not key.startswith("_"):
            arrays[key] = value.astype(np.float32)
    for key, value in arrays.items():
        np.save(os.path.join(out_dir, key + ".npy"), value)

    # Summary: shapes and sizes, signal health, float32 yardstick, tie margins.
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print("== %s: N=%d C=%d %dx%d, %d params, %d files, %.2f MB"
          % (case, n, in_channels, h, w, nparams, len(os.listdir(out_dir)), size / 1e6))
    print("   probs[0] = %s" % np.array2string(ref["probs"][0], precision=4))
    if full:
        print("   loss = %.6f" % ref["loss"][0])
    for name, _ in LAYERS:
        a = ref["_acts"][name].numpy()
        line = "   act_%-2s %-18s mean %.3f  >0 %.2f" % (
            name, str(a.shape), a.mean(), (a > 0).mean())
        if full:
            line += "  |grad_act| rms %.2e  |grad_w| rms %.2e" % (
                np.sqrt((ref["grad_act_" + name] ** 2).mean()),
                np.sqrt((ref["grad_conv%s.weight" % name] ** 2).mean()))
        print(line)
    worst = max(((k, rel_err(ref[k], f32[k])) for k in ref if not k.startswith("_")),
                key=lambda kv: kv[1])
    print("   float32 torch vs float64 reference: logits %.1e, worst %s %.1e"
          % (rel_err(ref["logits"], f32["logits"]), worst[0], worst[1]))
    min_pre, min_gap = tie_margins(ref["_pre"], ref["_acts"])
    print("   closest calls: min |pre-ReLU| %.1e, min max-pool gap %.1e;"
          " float32 flips %d" % (min_pre, min_gap, decision_flips(ref, f32)))
    return size


def main():
    torch.set_num_threads(1)  # fixed reduction order: reproducible bytes
    os.makedirs(OUT_ROOT, exist_ok=True)
    total = 0
    total += write_case("b2_64_c1", 1, 2, 64, 64, [1, 3], seed=1, full=True)
    total += write_case("b1_32x64_c3", 3, 1, 32, 64, [4], seed=2, full=True)
    total += write_case("b1_512_c1", 1, 1, 512, 512, [0], seed=3, full=False)
    print("total %.2f MB in %s" % (total / 1e6, OUT_ROOT))

    digest = hashlib.sha256()
    for case in sorted(os.listdir(OUT_ROOT)):
        case_dir = os.path.join(OUT_ROOT, case)
        if not os.path.isdir(case_dir):
            continue
        for f in sorted(os.listdir(case_dir)):
            with open(os.path.join(case_dir, f), "rb") as fh:
                digest.update(f.encode() + fh.read())
    print("fixtures sha256 %s" % digest.hexdigest())


if __name__ == "__main__":
    main()
