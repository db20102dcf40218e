"""kcomp against PyTorch (eager, when installed) and numpy over shapes and ops that `kcomp bench`'s
suite does not list: reductions over every axis form and awkward extents (rows of 3, 37, 64;
middle axes; one long row), layout copies, products of odd shapes and batches of small
matrices, convolutions and pooling, losses. It looks for pathologies, not for peak numbers:
each row is kcomp's best time against the best of the others, measured in the same process.

    python bench/sweep.py                  # about 3 minutes; prints a markdown table
    python bench/sweep.py argmax softmax   # only the cases whose name contains a word
    python bench/sweep.py --out bench/out/sweep.md

Every kcomp result is checked against PyTorch's (else numpy's) before it is timed; a mismatch
is listed and not timed. Times are the best of batches over about 0.15 s each, kcomp timed
before and after the others (the machines are shared and noisy: compare ratios, rerun outliers).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import kcomp.backend as K
from kcomp.bench import machine

try:
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    torch.set_grad_enabled(False)
except ImportError:  # numpy is the only peer then
    torch = None

RNG = np.random.default_rng(0)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _nhwc(f):
    """A PyTorch NCHW function applied to NHWC arrays."""
    return lambda x, *w: f(x.permute(0, 3, 1, 2), *w).permute(0, 2, 3, 1).contiguous()


def _reduction(op, shape, ax):
    """One reduction case: (name, inputs, kcomp fn, torch fn or None, numpy fn or None)."""
    tax = ax if isinstance(ax, int) else tuple(ax)
    k = {"softmax": lambda x: K.softmax(x, axis=ax),
         "any": lambda x: K.any(K.greater(x, 2.5), axis=ax)}.get(
        op, lambda x: getattr(K, op)(x, axis=ax))
    one = isinstance(ax, int)  # PyTorch's prod, argmax, cumsum, any take one axis
    t = {"sum": lambda x: x.sum(tax), "mean": lambda x: x.mean(tax),
         "max": lambda x: x.amax(tax), "var": lambda x: x.var(tax, unbiased=False),
         "logsumexp": lambda x: torch.logsumexp(x, tax), "softmax": lambda x: x.softmax(ax),
         "prod": lambda x: x.prod(ax), "argmax": lambda x: torch.argmax(x, ax),
         "cumsum": lambda x: x.cumsum(ax), "any": lambda x: (x > 2.5).any(ax)}[op]
    if not one and op in ("prod", "any"):
        t = None
    n = {"softmax": None, "logsumexp": None, "any": lambda x: np.any(x > 2.5, axis=ax)}.get(
        op, lambda x: getattr(np, op)(x, axis=ax))
    return f"{op} {shape} axis {ax}", [_r(*shape)], k, t, n


def cases():
    """(name, input arrays, kcomp fn, torch fn or None, numpy fn or None)"""
    out = []
    for shape, ax in [((1000, 37), 1), ((1000, 37), 0), ((37, 100000), 1), ((100000, 37), 0),
                      ((64, 1000, 33), 1), ((64, 1000, 33), (0, 2)), ((256, 256, 64), 2),
                      ((3, 5000, 300), 0), ((5000, 3), 1), ((1 << 22,), 0), ((2, 3, 4), 1)]:
        for op in ("sum", "mean", "max", "prod", "var", "logsumexp", "argmax", "softmax",
                   "cumsum", "any"):
            if isinstance(ax, int) or op not in ("argmax", "softmax", "cumsum"):
                out.append(_reduction(op, shape, ax))
    mat = _r(2048, 2048)
    out += [
        ("transpose (2048,2048)", [mat], K.transpose, lambda a: a.t().contiguous(),
         lambda a: np.ascontiguousarray(a.T)),
        ("permute (64,128,256) -> (2,0,1)", [_r(64, 128, 256)],
         lambda a: K.permute_dimensions(a, (2, 0, 1)), lambda a: a.permute(2, 0, 1).contiguous(),
         lambda a: np.ascontiguousarray(a.transpose(2, 0, 1))),
        ("slice [:, 100:900:2] of (4096,1024)", [_r(4096, 1024)], lambda a: a[:, 100:900:2],
         lambda a: a[:, 100:900:2].contiguous(), lambda a: np.ascontiguousarray(a[:, 100:900:2])),
        ("concatenate axis 1, 3x(1000,333)", [_r(1000, 333)] * 3,
         lambda a, b, c: K.concatenate([a, b, c], 1), lambda a, b, c: torch.cat([a, b, c], 1),
         lambda a, b, c: np.concatenate([a, b, c], 1)),
        ("gather 4096 rows of (50000,128)",
         [_r(50000, 128), RNG.integers(0, 50000, 4096).astype(np.int32)], K.gather,
         lambda e, i: e[i.long()], lambda e, i: e[i]),
        ("chain tanh(a*b+1)*sigmoid(a)+0.5b (1000,1000)", [_r(1000, 1000), _r(1000, 1000)],
         lambda a, b: K.tanh(a * b + 1.0) * K.sigmoid(a) + 0.5 * b,
         lambda a, b: torch.tanh(a * b + 1.0) * torch.sigmoid(a) + 0.5 * b, None),
        ("fused 8 inputs a*b+c*d+tanh(e*f)+g/(|h|+1) (1000,1000)", [_r(1000, 1000)] * 8,
         lambda a, b, c, d, e, f, g, h: a * b + c * d + K.tanh(e * f) + g / (K.abs(h) + 1.0),
         lambda a, b, c, d, e, f, g, h: a * b + c * d + torch.tanh(e * f) + g / (h.abs() + 1.0),
         lambda a, b, c, d, e, f, g, h: a * b + c * d + np.tanh(e * f) + g / (np.abs(h) + 1)),
        ("elu (4096,1024)", [_r(4096, 1024)], K.elu, torch.nn.functional.elu if torch else None,
         None),
        ("softplus (4096,1024)", [_r(4096, 1024)], K.softplus,
         torch.nn.functional.softplus if torch else None, None),
        ("sin (4096,1024)", [_r(4096, 1024)], K.sin, torch.sin if torch else None, np.sin),
        ("pow abs(x)^2.5 (4096,1024)", [np.abs(_r(4096, 1024))], lambda a: K.pow(a, 2.5),
         lambda a: torch.pow(a, 2.5), lambda a: np.power(a, np.float32(2.5))),
        ("mean squared error (4096,1000)", [_r(4096, 1000), _r(4096, 1000)],
         lambda y, t: K.mean(K.square(y - t), -1), lambda y, t: ((y - t) ** 2).mean(-1),
         lambda y, t: np.mean(np.square(y - t), -1)),
        ("l2_normalize (4096,1024)", [_r(4096, 1024)], lambda a: K.l2_normalize(a, -1),
         lambda a: torch.nn.functional.normalize(a, dim=-1), None),
    ]
    for m, k, n in [(17, 17, 17), (100, 100, 100), (333, 777, 555), (2048, 64, 2048),
                    (64, 4096, 64), (3000, 3, 3000),
                    (12544, 64, 24)]:  # a 1x1 convolution's product: many rows, small B
        out.append((f"dot ({m},{k})x({k},{n})", [_r(m, k), _r(k, n)], K.dot,
                    lambda a, b: a @ b, lambda a, b: a @ b))
    out += [
        ("dot x W^T (512,1024)x(1000,1024)^T", [_r(512, 1024), _r(1000, 1024)],
         lambda a, w: K.dot(a, K.transpose(w)), lambda a, w: a @ w.t(), lambda a, w: a @ w.T),
        ("dot 3-D (32,100,256)x(256,512)", [_r(32, 100, 256), _r(256, 512)], K.dot,
         lambda a, b: a @ b, lambda a, b: a @ b),
    ]
    for b, m, k, n in [(1000, 20, 30, 20), (4096, 4, 4, 4), (512, 8, 64, 8), (256, 64, 64, 64)]:
        out.append((f"batch_dot ({b},{m},{k})x({b},{k},{n})", [_r(b, m, k), _r(b, k, n)],
                    K.batch_dot, torch.bmm if torch else None, np.matmul))
    out += [
        ("batch_dot axes (2,2) (64,100,64)", [_r(64, 100, 64), _r(64, 100, 64)],
         lambda a, b: K.batch_dot(a, b, axes=(2, 2)), lambda a, b: a @ b.transpose(1, 2),
         lambda a, b: a @ b.transpose(0, 2, 1)),
        ("conv2d NHWC (16,28,28,128) 1x1 x256", [_r(16, 28, 28, 128), _r(1, 1, 128, 256)],
         K.conv2d, _nhwc(lambda x, w: torch.nn.functional.conv2d(x, w.permute(3, 2, 0, 1))),
         None),
        ("conv2d NCHW (8,32,56,56) 3x3 x32 same", [_r(8, 32, 56, 56), _r(3, 3, 32, 32)],
         lambda x, w: K.conv2d(x, w, padding="same", data_format="channels_first"),
         lambda x, w: torch.nn.functional.conv2d(x, w.permute(3, 2, 0, 1), padding=1), None),
        ("conv1d (32,1000,64) k5 x128", [_r(32, 1000, 64), _r(5, 64, 128)], K.conv1d,
         lambda x, w: torch.nn.functional.conv1d(x.permute(0, 2, 1), w.permute(2, 1, 0))
         .permute(0, 2, 1).contiguous(), None),
        ("depthwise (8,56,56,64) 3x3 same", [_r(8, 56, 56, 64), _r(3, 3, 64, 1)],
         lambda x, w: K.depthwise_conv2d(x, w, padding="same"),
         _nhwc(lambda x, w: torch.nn.functional.conv2d(x, w.permute(2, 3, 0, 1), padding=1,
                                                       groups=64)), None),
        ("max pool 2x2 (32,64,64,32)", [_r(32, 64, 64, 32)],
         lambda x: K.pool2d(x, (2, 2), strides=(2, 2), pool_mode="max"),
         _nhwc(lambda x: torch.nn.functional.max_pool2d(x, 2)), None),
        ("global average pool (64,14,14,512)", [_r(64, 14, 14, 512)],
         lambda x: K.mean(x, axis=(1, 2)), lambda x: x.mean((1, 2)), lambda x: x.mean((1, 2))),
        ("conv2d stem (8,224,224,3) 7x7/2 x64 same", [_r(8, 224, 224, 3), _r(7, 7, 3, 64)],
         lambda x, w: K.conv2d(x, w, strides=(2, 2), padding="same"),
         _nhwc(lambda x, w: torch.nn.functional.conv2d(
             torch.nn.functional.pad(x, (2, 3, 2, 3)), w.permute(3, 2, 0, 1), stride=2)), None),
        ("conv2d (16,56,56,64) 3x3/2 x128 valid", [_r(16, 56, 56, 64), _r(3, 3, 64, 128)],
         lambda x, w: K.conv2d(x, w, strides=(2, 2)),
         _nhwc(lambda x, w: torch.nn.functional.conv2d(x, w.permute(3, 2, 0, 1), stride=2)),
         None),
        ("conv2d (8,64,64,32) 3x3 dilation 2 x32 valid", [_r(8, 64, 64, 32), _r(3, 3, 32, 32)],
         lambda x, w: K.conv2d(x, w, dilation_rate=(2, 2)),
         _nhwc(lambda x, w: torch.nn.functional.conv2d(x, w.permute(3, 2, 0, 1), dilation=2)),
         None),
        ("conv2d_transpose (8,32,32,64) 3x3/2 x32 same", [_r(8, 32, 32, 64), _r(3, 3, 32, 64)],
         lambda x, w: K.conv2d_transpose(x, w, (8, 64, 64, 32), strides=(2, 2), padding="same"),
         # (TensorFlow's "same": all of the one padding element after, none before)
         _nhwc(lambda x, w: torch.nn.functional.conv_transpose2d(
             x, w.permute(3, 2, 0, 1), stride=2)[:, :, :64, :64]), None),
        ("separable_conv2d (8,56,56,64) 3x3 x128 same",
         [_r(8, 56, 56, 64), _r(3, 3, 64, 1), _r(1, 1, 64, 128)],
         lambda x, d, p: K.separable_conv2d(x, d, p, padding="same"),
         _nhwc(lambda x, d, p: torch.nn.functional.conv2d(torch.nn.functional.conv2d(
             x, d.permute(2, 3, 0, 1), padding=1, groups=64), p.permute(3, 2, 0, 1))), None),
        ("avg pool 3x3/1 same (8,56,56,64)", [_r(8, 56, 56, 64)],
         lambda x: K.pool2d(x, (3, 3), strides=(1, 1), padding="same", pool_mode="avg"),
         _nhwc(lambda x: torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)),
         None),
        ("resize_images nearest x2 (16,32,32,64)", [_r(16, 32, 32, 64)],
         lambda x: K.resize_images(x, 2, 2, "channels_last"),
         _nhwc(lambda x: torch.nn.functional.interpolate(x, scale_factor=2)), None),
        ("spatial_2d_padding 1 (32,32,32,64)", [_r(32, 32, 32, 64)],
         lambda x: K.spatial_2d_padding(x, ((1, 1), (1, 1))),
         lambda x: torch.nn.functional.pad(x, (0, 0, 1, 1, 1, 1)),
         lambda x: np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))),
        ("batch_normalization (4096,1024)",
         [_r(4096, 1024), _r(1024), np.abs(_r(1024)) + 0.5, _r(1024), _r(1024)],
         lambda x, m, v, b, g: K.batch_normalization(x, m, v, b, g, epsilon=1e-3),
         lambda x, m, v, b, g: torch.nn.functional.batch_norm(x, m, v, g, b, eps=1e-3), None),
        ("categorical_crossentropy (4096,1000)",
         [np.abs(_r(4096, 1000)) + 0.01, np.abs(_r(4096, 1000))],
         lambda t, p: K.categorical_crossentropy(t, p),
         lambda t, p: -(t * torch.log(torch.clamp(p / p.sum(-1, keepdim=True), 1e-7, 1 - 1e-7)))
         .sum(-1), None),
        ("one_hot 4096 of 1000", [RNG.integers(0, 1000, 4096).astype(np.int32)],
         lambda i: K.one_hot(i, 1000),
         lambda i: torch.nn.functional.one_hot(i.long(), 1000).float(), None),
        ("tile (1000,333) x (3,2)", [_r(1000, 333)], lambda a: K.tile(a, (3, 2)),
         lambda a: a.repeat(3, 2), lambda a: np.tile(a, (3, 2))),
        ("repeat_elements x3 axis 1 (1000,333)", [_r(1000, 333)],
         lambda a: K.repeat_elements(a, 3, 1), lambda a: a.repeat_interleave(3, 1),
         lambda a: np.repeat(a, 3, 1)),
        ("repeat_elements x3 axis 0 (1000,333)", [_r(1000, 333)],
         lambda a: K.repeat_elements(a, 3, 0), lambda a: a.repeat_interleave(3, 0),
         lambda a: np.repeat(a, 3, 0)),
        ("reverse axis 1 (4096,1024)", [_r(4096, 1024)], lambda a: K.reverse(a, 1),
         lambda a: torch.flip(a, (1,)), lambda a: np.ascontiguousarray(a[:, ::-1])),
    ]
    return out


def best_time(fn, budget: float = 0.15) -> float:
    """Best seconds per call over batches of calls lasting about 20 ms, for about `budget` s."""
    fn()
    t = time.perf_counter()
    fn()
    per = max(1, int(0.02 / max(time.perf_counter() - t, 1e-7)))
    best, end = float("inf"), time.perf_counter() + budget
    while time.perf_counter() < end or best == float("inf"):
        t = time.perf_counter()
        for _ in range(per):
            fn()
        best = min(best, (time.perf_counter() - t) / per)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("words", nargs="*", help="only cases whose name contains one of these")
    ap.add_argument("--out", help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    head = ["| case | kcomp | torch | numpy | kcomp / best other |", "|---|---:|---:|---:|---:|"]
    rows, worst = [], []
    for name, arrays, kfn, tfn, nfn in cases():
        if args.words and not any(w in name for w in args.words):
            continue
        tfn = tfn if torch is not None else None
        phs = [K.placeholder(shape=a.shape, dtype=str(a.dtype)) for a in arrays]
        f = K.function(phs, [kfn(*phs)])
        tensors = [torch.from_numpy(a) for a in arrays] if tfn else None
        got = np.asarray(f(arrays)[0]).astype(np.float64)
        want = tfn(*tensors) if tfn else None
        if want is None:
            tfn, want = None, nfn(*arrays) if nfn else None
        else:
            want = want.numpy()
        if want is not None and (got.shape != np.shape(want) or not np.allclose(
                got, want, rtol=2e-3, atol=2e-3 * max(1.0, float(np.abs(want).max())))):
            rows.append(f"| {name} | result differs from the peer's | | | |")
            print(rows[-1], flush=True)
            continue
        tk = best_time(lambda: f(arrays))
        tt = best_time(lambda: tfn(*tensors)) if tfn else float("nan")
        tn = best_time(lambda: nfn(*arrays)) if nfn else float("nan")
        tk = min(tk, best_time(lambda: f(arrays)))
        other = np.nanmin([tt, tn]) if tfn or nfn else float("nan")
        cell = lambda s: "" if s != s else f"{s * 1e6:.1f} µs"  # noqa: E731
        rows.append(f"| {name} | {cell(tk)} | {cell(tt)} | {cell(tn)} | {tk / other:.2f} |")
        worst.append((tk / other, name))
        print(rows[-1], flush=True)
    d = machine.describe()
    title = (f"kcomp {d['kcomp']} ({d['kcomp_revision']}), {d['cpu']}, {d['cores']} cores; "
             f"`python bench/sweep.py {' '.join(sys.argv[1:])}`")
    text = "\n".join([title, ""] + head + rows)
    text += "\n\nslowest against the best other: " + ", ".join(
        f"{n} {r:.2f}x" for r, n in sorted(worst, reverse=True)[:8] if r == r) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
