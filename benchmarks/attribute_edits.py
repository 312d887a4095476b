"""InterFaceGAN on a face generator from real labels: age and gender (UTKFace), smile (CelebA).

For each attribute: train a small CNN on the labelled real faces, score ``--n`` generator samples, fit
an InterFaceGAN boundary in W, then move ``--m`` fresh samples along the boundary and print every
classifier's mean score at each strength. A good direction moves its own attribute monotonically and
the others less. Writes the boundaries as gankit direction files (``--out``, default next to nothing).

    .venv/bin/python benchmarks/attribute_edits.py --generator gankit-faces --out directions.npz
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
ATTRIBUTES = [  # name, csv, column, task
    ("age", SHARED / "utkface" / "labels.csv", "age", "regression"),
    ("gender", SHARED / "utkface" / "labels.csv", "gender", "binary"),        # 1 = female
    ("smile", SHARED / "celeba" / "labels.csv", "Smiling", "binary"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default="gankit-faces")
    ap.add_argument("--n", type=int, default=5000, help="generator samples scored to fit each boundary")
    ap.add_argument("--m", type=int, default=200, help="fresh samples moved along each boundary")
    ap.add_argument("--max-train", type=int, default=4000, help="labelled images per classifier")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--strengths", default="-3,-1.5,0,1.5,3")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the boundaries as a gankit direction .npz")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import generators
    from generators import registry
    from editing import attributes as A
    from editing.directions import Directions, generator_sha256, save

    G = generators.load(args.generator).eval()
    strengths = [float(s) for s in args.strengths.split(",")]
    models, info = {}, {}
    t0 = time.time()
    for name, csv, col, task in ATTRIBUTES:
        paths, y = A.read_labels(csv, col)
        rng = np.random.RandomState(0)
        keep = rng.permutation(len(paths))[:args.max_train]
        model, inf = A.train_attribute_model([paths[i] for i in keep], y[keep], task=task, size=G.img_resolution,
                                             epochs=args.epochs, seed=0)
        models[name], info[name] = model, inf
        q = inf.get("val_accuracy", inf.get("val_mae"))
        print(f"classifier {name:<7} ({task}, {len(keep)} images): "
              + (f"val accuracy {q:.3f}" if task == "binary" else f"val MAE {q:.2f} years"), flush=True)
    boundaries, details = [], {}
    for name, *_ in ATTRIBUTES:
        res = A.fit_boundaries(G, models[name], n=args.n, spaces=("w",), seed=1)
        boundaries.append(res["w"][0])
        details[name] = {k: float(v) for k, v in res["details"]["w"].items() if np.isscalar(v)}
        print(f"boundary {name:<7}: {details[name]}", flush=True)

    # Move fresh samples along each boundary; score with every classifier.
    gen = torch.Generator().manual_seed(12345)
    z = torch.randn([args.m, G.z_dim], generator=gen)
    with torch.no_grad():
        w = G.mapping(z, None)
    table = {}
    for bi, (name, *_rest) in enumerate(ATTRIBUTES):
        b = torch.from_numpy(boundaries[bi]).float()
        rows = {other: [] for other, *_ in ATTRIBUTES}
        for s in strengths:
            with torch.no_grad():
                img = G.synthesis(w + s * b, noise_mode="const")
            for other, *_ in ATTRIBUTES:
                rows[other].append(float(np.mean(A.predict(models[other], img))))
        table[name] = rows
    print(f"\nmean classifier scores along each W boundary (strengths {strengths}); "
          f"age in years, gender/smile as classifier logits")
    summary = {}
    for name in table:
        print(f"  along {name}:")
        for other, vals in table[name].items():
            mono = all(np.diff(vals) > 0) or all(np.diff(vals) < 0)
            print(f"    {other:<7} " + " ".join(f"{v:8.3f}" for v in vals) + f"   span {vals[-1] - vals[0]:+.3f}"
                  + ("  monotonic" if mono else ""))
        own = table[name][name]
        summary[name] = {"own_monotonic": bool(all(np.diff(own) > 0) or all(np.diff(own) < 0)),
                         "own_span": own[-1] - own[0],
                         "other_spans": {o: v[-1] - v[0] for o, v in table[name].items() if o != name}}
    print(f"({time.time() - t0:.0f} s)")
    if args.out:
        d = Directions(np.stack(boundaries), names=[a[0] for a in ATTRIBUTES], space="w", method="interfacegan",
                       generator_sha256=generator_sha256(str(registry.resolve(args.generator))))
        save(args.out, d)
        print(f"wrote {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps({"classifiers": {k: {kk: vv for kk, vv in v.items()
                                                                    if isinstance(vv, (int, float))}
                                                                for k, v in info.items()},
                                               "boundaries": details, "scores": table, "strengths": strengths,
                                               "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
