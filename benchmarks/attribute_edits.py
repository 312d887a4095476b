"""InterFaceGAN on a face generator from real labels: age and gender (UTKFace), smile (CelebA).

For each attribute: train a small CNN on the labelled real faces, score ``--n`` generator samples, fit
an InterFaceGAN boundary in W, then move ``--m`` fresh samples along the boundary and print every
classifier's mean score at each strength. A good direction moves its own attribute monotonically and
the others less; spans are also given in units of each score's standard deviation over the samples
(``sd``), which makes years and logits comparable. ``--conditional`` adds InterFaceGAN's conditioned
directions (``age-cond`` = age with the gender and smile boundaries projected out, ...).

``--encoder NAME`` repeats the sweep on real faces: held-out UTKFace images (the inversion benchmark's
split) inverted with that encoder, moved along every direction on all W+ rows and rendered.

Writes the boundaries as a gankit direction file (``--out``); ``--save-classifiers DIR`` keeps the
classifiers, and ``--classifiers DIR --directions FILE`` reuse them (no refit).

    .venv/bin/python benchmarks/attribute_edits.py --generator gankit-faces --conditional --out directions.npz
    .venv/bin/python benchmarks/attribute_edits.py --classifiers clf/ --directions gankit-faces-directions \
        --encoder gankit-faces-e4e --m 0
"""
from __future__ import annotations

import argparse
import os
import sys
import json
import time
from pathlib import Path

import numpy as np
import torch

BENCH = str(Path(__file__).resolve().parent)
# benchmarks/inversion.py shares its name with the ``inversion`` package: keep this folder out of the way
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != BENCH]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(BENCH)

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
    ap.add_argument("--conditional", action="store_true", help="also fit the conditioned directions")
    ap.add_argument("--save-classifiers", default=None, metavar="DIR")
    ap.add_argument("--classifiers", default=None, metavar="DIR", help="reuse saved classifiers")
    ap.add_argument("--directions", default=None, help="reuse a direction file (no boundary fitting)")
    ap.add_argument("--encoder", default=None, help="also edit encoder inversions of held-out real faces")
    ap.add_argument("--faces", type=int, default=64, help="held-out faces for --encoder")
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
        if args.classifiers:
            models[name], info[name] = load_classifier(Path(args.classifiers) / f"{name}.pt")
        else:
            paths, y = A.read_labels(csv, col)
            rng = np.random.RandomState(0)
            keep = rng.permutation(len(paths))[:args.max_train]
            models[name], info[name] = A.train_attribute_model([paths[i] for i in keep], y[keep], task=task,
                                                               size=G.img_resolution, epochs=args.epochs, seed=0)
            if args.save_classifiers:
                save_classifier(models[name], info[name], Path(args.save_classifiers) / f"{name}.pt")
        q = info[name].get("val_accuracy", info[name].get("val_mae"))
        print(f"classifier {name:<7} ({task}, {info[name].get('n_train', '?')} train images): "
              + (f"val accuracy {q:.3f}" if task == "binary" else f"val MAE {q:.2f} years"), flush=True)
    names = [a[0] for a in ATTRIBUTES]
    details = {}
    if args.directions:
        d = load_directions(args.directions)
        dirs = {n: d.vector(n).reshape(-1) for n in d.names}
    else:
        dirs = {}
        for name in names:
            res = A.fit_boundaries(G, models[name], n=args.n, spaces=("w",), seed=1)
            dirs[name] = res["w"][0]
            details[name] = {k: float(v) for k, v in res["details"]["w"].items() if np.isscalar(v)}
            print(f"boundary {name:<7}: {details[name]}", flush=True)
        if args.conditional:
            from editing.interfacegan import project_boundary
            for name in names:
                others = [dirs[o][None] for o in names if o != name]
                dirs[f"{name}-cond"] = project_boundary(dirs[name][None], *others)[0]
        cos = {f"{a}/{b}": float(np.dot(dirs[a], dirs[b])) for i, a in enumerate(names) for b in names[i + 1:]}
        print(f"cosines between boundaries: {cos}")

    table, summary = {}, {}
    if args.m > 0:
        gen = torch.Generator().manual_seed(12345)
        z = torch.randn([args.m, G.z_dim], generator=gen)
        with torch.no_grad():
            w = G.mapping(z, None)
        table["samples"] = sweep(G, w, dirs, models, strengths, A)
    if args.encoder:
        table["encoder"] = encoder_sweep(G, args.encoder, args.faces, dirs, models, strengths, A)
    print(f"\nmean classifier scores along each W direction (strengths {strengths}); age in years, gender/smile "
          f"as classifier logits; sd = span / standard deviation of that score over the images at strength 0")
    for where, tab in table.items():
        print(f" {where}:")
        summary[where] = {}
        for name, (rows, sds) in tab.items():
            print(f"  along {name}:")
            for other, vals in rows.items():
                mono = all(np.diff(vals) > 0) or all(np.diff(vals) < 0)
                span = vals[-1] - vals[0]
                print(f"    {other:<7} " + " ".join(f"{v:8.3f}" for v in vals)
                      + f"   span {span:+.3f} ({span / sds[other]:+.2f} sd)" + ("  monotonic" if mono else ""))
            own = rows[name.split("-")[0]]
            summary[where][name] = {
                "own_monotonic": bool(all(np.diff(own) > 0) or all(np.diff(own) < 0)),
                "spans_sd": {o: (v[-1] - v[0]) / sds[o] for o, v in rows.items()}}
    print(f"({time.time() - t0:.0f} s)")
    if args.out:
        d = Directions(np.stack(list(dirs.values())), names=list(dirs), space="w", method="interfacegan",
                       generator_sha256=generator_sha256(str(registry.resolve(args.generator))))
        save(args.out, d)
        print(f"wrote {args.out}")
    if args.json:
        Path(args.json).write_text(json.dumps({"classifiers": {k: {kk: vv for kk, vv in v.items()
                                                                    if isinstance(vv, (int, float))}
                                                                for k, v in info.items()},
                                               "boundaries": details, "strengths": strengths,
                                               "scores": {k: {n: r for n, (r, _) in t.items()}
                                                          for k, t in table.items()},
                                               "summary": summary}, indent=2))


def sweep(G, ws, dirs, models, strengths, A, offsets=None):
    """{direction: ({classifier: [mean score per strength]}, {classifier: sd at strength 0})}."""
    from editing import apply
    if ws.ndim == 2:
        ws = ws[:, None].repeat(1, G.num_ws, 1)
    out = {}
    for name, v in dirs.items():
        rows, sds = {o: [] for o in models}, {}
        for s in strengths:
            with torch.no_grad():
                wsd = apply(ws, torch.from_numpy(np.asarray(v)).float(), s)
                if offsets is not None:
                    from encoders.hyperstyle import synthesize_with_offsets
                    img = synthesize_with_offsets(G, wsd, offsets)
                else:
                    img = G.synthesis(wsd, noise_mode="const")
            for o, m in models.items():
                p = A.predict(m, img)
                rows[o].append(float(np.mean(p)))
                if s == 0:
                    sds[o] = float(np.std(p)) or 1.0
        if not sds:
            sds = {o: 1.0 for o in models}
        out[name] = (rows, sds)
    return out


def encoder_sweep(G, encoder, n, dirs, models, strengths, A):
    import encoders
    import importlib.util
    spec = importlib.util.spec_from_file_location("inversion_benchmark", os.path.join(BENCH, "inversion.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    heldout_files, load_faces, UTKFACE = bench.heldout_files, bench.load_faces, bench.UTKFACE
    model = encoders.load(encoder)
    x = load_faces(heldout_files(UTKFACE)[:n], G.img_resolution)
    with torch.no_grad():
        res = model.invert(x)
    offsets = None
    if res.get("offsets"):
        offsets = res["offsets"]
    print(f"encoder {encoder}: {len(x)} held-out faces inverted")
    return sweep(model.G, res["ws"], dirs, models, strengths, A, offsets=offsets)


def save_classifier(model, info, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(), info=info, input_size=model.input_size,
                    label_mean=model.label_mean, label_std=model.label_std, task=model.task), path)


def load_classifier(path):
    from editing.attributes import AttributeNet
    d = torch.load(path, weights_only=True)
    m = AttributeNet(d["input_size"])
    m.load_state_dict(d["state_dict"])
    m.label_mean, m.label_std, m.task = d["label_mean"], d["label_std"], d["task"]
    return m.eval(), d["info"]


def load_directions(src):
    from editing.directions import load
    return load(src)


if __name__ == "__main__":
    main()
