#!/usr/bin/python3
"""phantom_ceiling.py — how well can any model tell the phantom's phases
apart from one slice? An estimate of the task's ceiling.

Usage: bench/phantom_ceiling.py [BUILD_DIR] [--series N] [--seed S]
                                 [--slices K] [--csv FILE] [--fit-seed S]

Runs BUILD_DIR/bench/phantom_organs (the median HU of each organ of
interest on the middle slice of N phantom patients, exact label masks, no
noise), trains a small multilayer perceptron (PyTorch) on 80% of the
patients and prints its accuracy, macro F1 and confusion matrix on the
other 20%. With --slices K it takes K slices per patient, evenly from the
top to the bottom of the series (above and below the kidneys too, as
`ctphase evaluate` scores every slice), adds the slice's place in the
series to what the perceptron sees, and prints the per-slice scores and
the voted ones (each held-out patient's K predictions, majority vote,
ties to the highest mean probability; the argmax of the patient's mean
probability as a second way to vote), and a series reader: a second
perceptron that sees all K slices of a patient at once, in order. Every
score comes with its one-vs-all AUC (macro mean; majority votes scored by
vote share). --csv FILE keeps phantom_organs' table in FILE and reads it
from there next time (the organ table of 6,000 patients at 8 slices takes
6 min on an idle 2-core machine, 25 while a training run shares it);
--fit-seed S starts the perceptrons elsewhere, and the spread over seeds
is how far a score is the perceptron's luck.
The perceptron sees what a perfect organ segmentation would measure, so
its score bounds what a CNN can reach from the same slice — except for
what texture (the spleen's mottling in cm, the IVC's mixing) adds — and
shows how much of the adjacent-phase overlap is physiology.
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


def auc_ovr(y, score):
    """Macro mean of the five one-vs-all ROC areas: P(pos > neg) +
    P(pos = neg) / 2 over all pairs (Mann-Whitney)."""
    areas = []
    for c in range(5):
        pos, neg = score[y == c, c], np.sort(score[y != c, c])
        if len(pos) == 0 or len(neg) == 0:
            continue
        below = np.searchsorted(neg, pos, "left")
        tied = np.searchsorted(neg, pos, "right") - below
        areas.append((below.sum() + tied.sum() / 2) / (len(pos) * len(neg)))
    return float(np.mean(areas))


def report(title, y, pred, score=None, score_name="AUC"):
    cm = np.zeros((5, 5), int)
    for t, p in zip(y, pred):
        cm[t, p] += 1
    prec = np.diag(cm) / np.maximum(cm.sum(0), 1)
    rec = np.diag(cm) / np.maximum(cm.sum(1), 1)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-9)
    if title:
        print(f" {title} ({cm.sum()}):")
    print(f"  accuracy {np.trace(cm) / cm.sum():.3f}  macro P/R/F1 {prec.mean():.3f} / "
          f"{rec.mean():.3f} / {f1.mean():.3f}"
          + ("" if score is None else f"  {score_name} {auc_ovr(y, score):.4f}"))
    print("  F1 " + "  ".join(f"{c} {v:.3f}" for c, v in zip(CLASSES, f1)))
    print("  confusion (rows true, columns predicted):")
    for c, row in zip(CLASSES, cm):
        print(f"    {c:7s}" + "".join(f"{v:6d}" for v in row))


def fit(x, y, train, epochs, seed):
    """Fit the perceptron on the rows `train`; return every row's class
    probabilities."""
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    xt = torch.tensor((x - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 128), torch.nn.ReLU(),
                              torch.nn.Linear(128, 128), torch.nn.ReLU(),
                              torch.nn.Linear(128, 5))
    opt = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    trt = torch.tensor(train)
    for _ in range(epochs):
        perm = trt[torch.randperm(len(train))]
        for i in range(0, len(train), 256):
            b = perm[i:i + 256]
            loss = torch.nn.functional.cross_entropy(net(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return torch.softmax(net(xt), 1).numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"))
    ap.add_argument("--series", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=888000000)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--slices", type=int, default=1)
    ap.add_argument("--fit-seed", type=int, default=0,
                    help="the perceptrons' initial weights and batch order")
    ap.add_argument("--csv", help="keep the organ table here; read it if it exists")
    a = ap.parse_args()
    if a.csv and os.path.exists(a.csv):
        with open(a.csv) as f:
            out = f.read()
        print(f"organ table from {a.csv}")
    else:
        out = subprocess.run([os.path.join(a.build, "bench", "phantom_organs"),
                              str(a.series), str(a.seed), "512", str(a.slices)],
                             check=True, capture_output=True, text=True).stdout
        if a.csv:
            with open(a.csv + ".tmp", "w") as f:
                f.write(out)
            os.replace(a.csv + ".tmp", a.csv)
    d = np.genfromtxt(io.StringIO(out), delimiter=",", names=True)
    y = d["phase"].astype(int)
    organs = [c for c in d.dtype.names if c.startswith("label")]
    x = np.stack([d[c] for c in organs], 1)
    absent = np.isnan(x)
    x = np.concatenate([np.where(absent, 0, x) / 100.0, absent], 1)
    patient = d["patient"].astype(int)
    if a.slices > 1:
        x = np.concatenate([x, d["place"][:, None]], 1)
    n = int(patient.max()) + 1
    order = np.random.RandomState(0).permutation(n)
    held = np.zeros(n, bool)
    held[order[int(0.8 * n):]] = True
    tr, te = np.flatnonzero(~held[patient]), np.flatnonzero(held[patient])
    torch.set_num_threads(2)
    prob = fit(x, y, tr, a.epochs, a.fit_seed)[te]
    what = "organ medians of one slice" if a.slices == 1 else \
        f"organ medians and place of one of {a.slices} slices per patient"
    print(f"{what}, {int((~held).sum())} patients to fit, {int(held.sum())} held out:")
    report("per slice" if a.slices > 1 else "", y[te], prob.argmax(1), prob)
    if a.slices > 1:
        kidney = ~np.isnan(d["label7"][te])
        report("per slice, slices through a kidney (the paper's range)", y[te][kidney],
               prob[kidney].argmax(1), prob[kidney])
        pt = patient[te]
        ids = np.unique(pt)
        vy, vp, share, mean = [], [], [], []
        for i in ids:
            rows = pt == i
            votes = np.bincount(prob[rows].argmax(1), minlength=5)
            best = np.flatnonzero(votes == votes.max())
            vp.append(best[np.argmax(prob[rows].mean(0)[best])])
            vy.append(y[te][rows][0])
            share.append(votes / votes.sum())
            mean.append(prob[rows].mean(0))
        vy = np.array(vy)
        report("voted", vy, np.array(vp), np.array(share), "AUC (vote share)")
        mean = np.array(mean)
        report("averaged (each patient's mean probability)", vy, mean.argmax(1), mean)
        # The series reader: one row per patient, its K slices side by side
        # in their order from top to bottom.
        rows = np.lexsort((d["place"], patient))
        if np.any(np.bincount(patient) != a.slices):
            raise SystemExit("phantom_ceiling: not every patient has --slices slices")
        xs = x[rows].reshape(n, -1)
        ys = y[rows].reshape(n, -1)[:, 0]
        series_prob = fit(xs, ys, np.flatnonzero(~held), a.epochs, a.fit_seed)[held]
        report(f"series reader (all {a.slices} slices at once)", ys[held],
               series_prob.argmax(1), series_prob)
    return 0


if __name__ == "__main__":
    sys.exit(main())
