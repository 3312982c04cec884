#!/usr/bin/python3
"""phantom_ceiling.py — how well can any model tell the phantom's phases
apart from one slice? An estimate of the task's ceiling.

Usage: bench/phantom_ceiling.py [BUILD_DIR] [--series N] [--seed S]
                                 [--slices K]

Runs BUILD_DIR/bench/phantom_organs (the median HU of each organ of
interest on the middle slice of N phantom patients, exact label masks, no
noise), trains a small multilayer perceptron (PyTorch) on 80% of the
patients and prints its accuracy, macro F1 and confusion matrix on the
other 20%. With --slices K it takes K slices per patient, evenly from the
top to the bottom of the series (above and below the kidneys too, as
`ctphase evaluate` scores every slice), adds the slice's place in the
series to what the perceptron sees, and prints the per-slice scores and
the voted ones (each held-out patient's K predictions, majority vote,
ties to the highest mean probability). The perceptron sees what a perfect organ segmentation would
measure, so its score bounds what a CNN can reach from the same slice —
except for what texture (the spleen's mottling in cm, the IVC's mixing)
adds — and shows how much of the adjacent-phase overlap is physiology.
"""
import argparse
import io
import os
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["noncon", "cm", "cmneph", "neph", "pyelo"]


def report(title, y, pred):
    cm = np.zeros((5, 5), int)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    prec = np.diag(cm) / np.maximum(cm.sum(0), 1)
    rec = np.diag(cm) / np.maximum(cm.sum(1), 1)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-9)
    if title:
        print(f" {title} ({cm.sum()}):")
    print(f"  accuracy {np.trace(cm) / cm.sum():.3f}  macro P/R/F1 {prec.mean():.3f} / "
          f"{rec.mean():.3f} / {f1.mean():.3f}")
    print("  F1 " + "  ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, f1)))
    print("  confusion (rows true, columns predicted):")
    for c, row in zip(CLASSES, cm):
        print(f"    {c:7s}" + "".join(f"{v:6d}" for v in row))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--series", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=888000000)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--slices", type=int, default=1)
    a = ap.parse_args()
    out = subprocess.run([os.path.join(a.build, "bench", "phantom_organs"), str(a.series),
                          str(a.seed), "512", str(a.slices)],
                         check=True, capture_output=True, text=True).stdout
    d = np.genfromtxt(io.StringIO(out), delimiter=",", names=True)
    y = d["phase"].astype(int)
    organs = [c for c in d.dtype.names if c.startswith("label")]
    x = np.stack([d[c] for c in organs], 1)
    absent = np.isnan(x)
    x = np.concatenate([np.where(absent, 0, x) / 100.0, absent], 1)
    patient = d["patient"].astype(int)
    if a.slices > 1:
        x = np.concatenate([x, d["place"][:, None]], 1)
    order = np.random.RandomState(0).permutation(a.series)
    held = np.zeros(a.series, bool)
    held[order[int(0.8 * a.series):]] = True
    tr, te = np.flatnonzero(~held[patient]), np.flatnonzero(held[patient])
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    xt = torch.tensor((x - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 128), torch.nn.ReLU(),
                              torch.nn.Linear(128, 128), torch.nn.ReLU(),
                              torch.nn.Linear(128, 5))
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    trt = torch.tensor(tr)
    for _ in range(a.epochs):
        perm = trt[torch.randperm(len(tr))]
        for i in range(0, len(tr), 256):
            b = perm[i:i + 256]
            loss = torch.nn.functional.cross_entropy(net(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        prob = torch.softmax(net(xt[te]), 1).numpy()
    what = "organ medians of one slice" if a.slices == 1 else \
        f"organ medians and place of one of {a.slices} slices per patient"
    print(f"{what}, {int((~held).sum())} patients to fit, {int(held.sum())} held out:")
    report("per slice" if a.slices > 1 else "", y[te], prob.argmax(1))
    if a.slices > 1:
        kidney = ~np.isnan(d["label7"][te])
        report("per slice, slices through a kidney (the paper's range)", y[te][kidney],
               prob[kidney].argmax(1))
        pt = patient[te]
        ids = np.unique(pt)
        vy, vp = [], []
        for i in ids:
            rows = pt == i
            votes = np.bincount(prob[rows].argmax(1), minlength=5)
            best = np.flatnonzero(votes == votes.max())
            vp.append(best[np.argmax(prob[rows].mean(0)[best])])
            vy.append(y[te][rows][0])
        report("voted", np.array(vy), np.array(vp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
