#!/usr/bin/python3
"""Times PyTorch on ctphase's network, as a peer for the C engine's benchmark.

Loads a ctphase safetensors model, builds the same network in PyTorch and
measures, on random 512x512 input (per slice, best of --reps, after one
warm-up):

    forward_b1_ms      inference, batch 1            (torch.no_grad)
    forward_b8_ms      inference, batch 8            (torch.no_grad)
    saliency_ms        forward + d(sum of predicted-class logits)/d input
                       (parameters frozen: no weight gradients), batch 8
                       (--saliency-batch 1 on a slow machine; the JSON says
                       which: saliency_batch)
    train_step_ms      forward, class-weighted cross-entropy, backward and
                       one Adam step, batch 8

plus the process's peak resident memory after each phase. It then exports the
model to ONNX (opset 13, input "x" (batch,C,512,512) with a dynamic batch
axis, output "logits") for bench/ort_bench.mjs, and prints one JSON object.

Run with Debian's PyTorch (the `python3` on PATH may lack torch):

    /usr/bin/python3 bench/peers.py MODEL.safetensors --threads 2 --reps 5 \
        --onnx /tmp/model.onnx --json /tmp/peers.json

The safetensors reader here is deliberately self-contained (F32 only), so the
benchmark needs nothing from tests/.
"""

import argparse
import json
import os
import platform
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LAYERS = [("1a", 16), ("1b", 16), ("2a", 16), ("2b", 16), ("3a", 32),
          ("3b", 32), ("4a", 32), ("4b", 32), ("5a", 64), ("5b", 64),
          ("6", 64)]
SIZE = 512


class CTPhaseNet(nn.Module):
    """DESIGN.md §1: 11 conv3x3+ReLU, max-pool after each "b" layer, global
    average pool, dense 64->5. Returns logits."""

    def __init__(self, in_channels):
        super().__init__()
        prev = in_channels
        for name, out in LAYERS:
            setattr(self, "conv" + name, nn.Conv2d(prev, out, 3, padding=1))
            prev = out
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        for name, _ in LAYERS:
            x = F.relu(getattr(self, "conv" + name)(x))
            if name.endswith("b"):
                x = F.max_pool2d(x, 2, 2)
        return self.fc(x.mean(dim=(2, 3)))


def read_safetensors(path):
    """(dict name -> float32 tensor, metadata dict) of an F32 safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, entry in header.items():
        if entry["dtype"] != "F32":
            raise SystemExit("%s: %s is %s, not F32" % (path, name, entry["dtype"]))
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype="<f4").reshape(entry["shape"])
        tensors[name] = torch.from_numpy(array.copy())
    return tensors, meta


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def best_ms(fn, reps):
    """Best wall time of fn() over reps runs, after one warm-up, in ms."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="the large batch (8)")
    ap.add_argument("--saliency-batch", type=int, default=8,
                    help="batch for the saliency timing (8; 1 on a slow machine)")
    ap.add_argument("--onnx", help="write the ONNX export here")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tensors, meta = read_safetensors(args.model)
    in_ch = int(meta.get("in_channels", "1"))
    net = CTPhaseNet(in_ch)
    net.load_state_dict(tensors)  # strict: names and shapes must match
    nb = args.batch
    x1 = torch.randn(1, in_ch, SIZE, SIZE)
    xb = torch.randn(nb, in_ch, SIZE, SIZE)
    res = {
        "torch_version": torch.__version__,
        "threads": args.threads,
        "reps": args.reps,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "machine": platform.machine(),
        "model": os.path.basename(args.model),
        "in_channels": in_ch,
        "input": "%dx%d" % (SIZE, SIZE),
        "peak_rss_mb": {},
    }
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    # Inference.
    net.eval()
    with torch.no_grad():
        res["forward_b1_ms"] = best_ms(lambda: net(x1), args.reps)
        log("forward b1: %.1f ms/slice" % res["forward_b1_ms"])
        res["peak_rss_mb"]["forward_b1"] = peak_rss_mb()
        res["forward_b%d_ms" % nb] = best_ms(lambda: net(xb), args.reps) / nb
        log("forward b%d: %.1f ms/slice" % (nb, res["forward_b%d_ms" % nb]))
        res["peak_rss_mb"]["forward_b%d" % nb] = peak_rss_mb()

    # Saliency: gradient of the predicted class's logit at the input. The
    # parameters are frozen so autograd computes the input gradient only,
    # as an explanation request would.
    net.requires_grad_(False)

    def saliency(x):
        xg = x.clone().requires_grad_(True)
        logits = net(xg)
        pred = logits.argmax(dim=1, keepdim=True)
        logits.gather(1, pred).sum().backward()
        return xg.grad

    sb = args.saliency_batch
    xs = xb[:sb] if sb <= nb else torch.randn(sb, in_ch, SIZE, SIZE)
    log("saliency: batch %d" % sb)
    res["saliency_batch"] = sb
    res["saliency_ms"] = best_ms(lambda: saliency(xs), args.reps) / sb
    log("saliency b%d: %.1f ms/slice" % (sb, res["saliency_ms"]))
    res["peak_rss_mb"]["saliency"] = peak_rss_mb()

    # One training step: forward, weighted cross-entropy, backward, Adam.
    net.requires_grad_(True)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    labels = torch.randint(0, 5, (nb,))
    class_w = torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0])

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(xb), labels, weight=class_w)
        loss.backward()
        opt.step()

    res["train_step_ms"] = best_ms(train_step, args.reps) / nb
    log("train step b%d: %.1f ms/slice" % (nb, res["train_step_ms"]))
    res["peak_rss_mb"]["train_step"] = peak_rss_mb()

    if args.onnx:
        # Export the loaded weights, not the ones Adam just moved.
        net.load_state_dict(tensors)
        net.eval()
        torch.onnx.export(net, x1, args.onnx, opset_version=13,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True)
        res["onnx"] = args.onnx
        log("exported %s" % args.onnx)

    for key, value in list(res.items()):
        if key.endswith("_ms"):
            res[key] = round(value, 2)
    res["peak_rss_mb"] = {k: round(v, 1) for k, v in res["peak_rss_mb"].items()}
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
